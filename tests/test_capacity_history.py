"""`capacity` and `scaling` save their history, and `recheck` computes their JSON again from that history alone.

The readings are the docs' scaling run's (docs/results/scaling/: the capacity
record of each configuration, shape and round it kept in scaling-raw.json, and
its scaling.json), written into a history by the commands' own recording
functions: a recheck must judge every step as that run did and give back its
figures exactly. No cluster here, about a second.
"""

import json
import shutil
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.experiments import capacity, scaling, scaling_report
from loadtest.harness.history import FILE, History
from loadtest.reports import page

RECORDED = Path(__file__).resolve().parent.parent / "docs" / "results" / "scaling"  # the docs' run
RAW = json.loads((RECORDED / "scaling-raw.json").read_text())  # {"<variant> <instances>": a record per round}
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "capacity-run"  # a tiny real capacity run


def readings(record):
    """A recorded capacity record's steps as capacity.record() takes them: each row without what judge() adds."""
    return [{key: value for key, value in row.items() if key not in ("held", "machine_limit")}
            for row in record["steps"]]


def capacity_run(folder, records):
    """A capacity history of these records (its own recording functions), and what the run writes from it."""
    command = "python -m loadtest capacity --configs memory+sticky,redis"
    with capacity.started(folder, command=command, configs=[r["config"] for r in records], instances=3,
                          steps=capacity.Steps(**records[0]["bounds"])) as recorded:
        for record in records:
            recorded.scenario = record["config"]
            capacity.record(recorded, record["config"], readings(record), record["throttled"])
    return capacity.report(folder, page.Run(capacity.NAME, command))


def test_recheck_of_a_capacity_history_judges_each_step_as_the_run_did_and_writes_the_same_json(tmp_path, capsys):
    records = [RAW["memory+sticky 1"][0], RAW["redis 4"][0]]  # in the second, one step over the bounds, then held
    rows, judged = capacity_run(tmp_path, records)
    assert judged is None and rows == records
    assert records[1]["transient"] and records[1]["users"] and records[0]["stopped_by"].startswith("at 581 users")
    written = json.loads((tmp_path / "capacity.json").read_text())
    assert main(["recheck", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "capacity.json").read_text()) == written == records
    assert f"report: {tmp_path / page.REPORT_FILE}" in capsys.readouterr().out


def test_recheck_of_the_docs_scaling_run_from_a_history_gives_its_scaling_json_exactly(tmp_path, capsys):
    own = json.loads((RECORDED / "scaling.json").read_text())
    cores = dict(scaling.SHAPES)
    command = "python -m loadtest scaling --rounds 3"
    with scaling_report.started(tmp_path, command=command, steps=capacity.Steps(**RAW["redis 1"][0]["bounds"]),
                                rounds=3, cgroup=own["plan"]["cgroup"], machine=own["plan"]["machine"]) as recorded:
        for key, records in RAW.items():
            variant, instances = key.rsplit(" ", 1)
            for number, record in enumerate(records, 1):
                recorded.scenario = f"{key}, round {number}"
                scaling_report.shape(recorded, variant=variant, instances=int(instances),
                                     cores=cores[int(instances)], round_number=number)
                capacity.record(recorded, record["config"], readings(record), record["throttled"])
    figures, judged = scaling_report.report(tmp_path, page.Run(scaling.NAME, command))
    assert judged is None and figures == own
    assert main(["recheck", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "scaling.json").read_text()) == own
    assert (tmp_path / "scaling-capacity.svg").exists() and "report: " in capsys.readouterr().out


def test_recheck_of_a_recorded_capacity_run_writes_its_capacity_json_exactly(tmp_path, capsys):
    """A tiny real run (tests/fixtures/capacity-run: `python -m loadtest capacity --configs redis --instances 1
    --start-users 5 --step 1 --hold 2 --max-users 20`), its history and capacity.json as it wrote them."""
    shutil.copy(FIXTURE / FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "capacity.json").read_text()) == json.loads((FIXTURE / "capacity.json").read_text())
    assert "report: " in capsys.readouterr().out


@pytest.mark.parametrize("experiment", [capacity.NAME, scaling.NAME])
def test_a_history_without_its_parameters_is_refused_naming_what_is_missing(tmp_path, capsys, experiment):
    record = RAW["redis 1"][0]
    with History(tmp_path / FILE, experiment=experiment, command=f"python -m loadtest {experiment}") as recorded:
        recorded.scenario = "redis"
        capacity.record(recorded, record["config"], readings(record), record["throttled"])
    assert main(["recheck", str(tmp_path)]) == 1
    assert f"its history has no parameters (the \"started\" sample {experiment} records first)" in \
        capsys.readouterr().err
