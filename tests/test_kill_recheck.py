"""The kill experiment's `recheck`: a finished run's figures, summary and page again from its recordings and records.

The fixture is what one small real run saved (`python -m loadtest run --configs memory+sticky,redis --users 6
--duration 12 --warmup 4 --session-writes`): its results.json and run.json, each configuration's Locust
recording (raw/) and record (records/), kept as the run wrote them: no cluster here, under a second.
"""

import json
import shutil
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.reports import page

RECORDED = Path(__file__).parent / "fixtures" / "kill-run"


def test_recheck_of_a_recorded_kill_run_reproduces_its_figures_exactly(tmp_path, capsys):
    shutil.copytree(RECORDED, tmp_path, dirs_exist_ok=True)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((RECORDED / "results.json").read_text())
    assert json.loads((tmp_path / "results.json").read_text()) == own
    assert [r["config"]["name"] for r in own["configs"]] == ["memory+sticky", "redis"]
    assert own["configs"][0]["users_lost_session"] > 0 == own["configs"][1]["users_lost_session"]  # as it showed
    record = json.loads((tmp_path / page.RUN_FILE).read_text())
    assert record["finished"] == json.loads((RECORDED / page.RUN_FILE).read_text())["finished"]
    assert f"report: {tmp_path / page.REPORT_FILE}" in capsys.readouterr().out


@pytest.mark.parametrize(("gone", "said"), [("records/redis.json", "no record of redis"),
                                             ("raw/redis.5564.json", "left 0 of its 1 recordings")])
def test_a_kill_run_without_its_records_or_recordings_cannot_be_rechecked_and_says_which(tmp_path, capsys, gone,
                                                                                          said):
    shutil.copytree(RECORDED, tmp_path, dirs_exist_ok=True)
    (tmp_path / gone).unlink()
    assert main(["recheck", str(tmp_path)]) == 1
    assert said in capsys.readouterr().err


def test_a_configuration_named_twice_is_refused_before_anything_runs(tmp_path):
    # Its records and recordings are named after it: a second run would overwrite or merge into the first's.
    with pytest.raises(SystemExit, match="names redis more than once"):
        main(["--configs", "redis,memory+sticky,redis", "--users", "2", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
