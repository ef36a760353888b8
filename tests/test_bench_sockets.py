"""python -m loadtest bench-sockets: its figures on hand-made readings, a recheck of a history its own recording
functions wrote, and one small real run (its history rechecked too).

The real run starts its three clusters (uvicorn behind HAProxy, real Redis)
and opens real sockets through HAProxy. It checks the accounting, not the
figures against the targets (a busy machine moves latency): every socket
asked for held, every delivery made once, latencies positive and ordered,
the room spread over three instances, every cluster down at the end.
"""

import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.bench import sockets as bench
from loadtest.bench import sockets_report
from loadtest.bench.sockets_figures import (
    cpu_us_per_delivery,
    deliveries,
    memory_per_socket_kib,
    over_rounds,
    ratio,
    spread,
)
from loadtest.harness import history, verdict
from loadtest.harness.socket_swarm import allow_open_files
from loadtest.reports import page

ROOT = Path(__file__).resolve().parent.parent


def test_memory_per_socket_is_the_growth_over_the_sockets_opened():
    assert memory_per_socket_kib(100_000, 350_000, 5000) == 50.0
    assert memory_per_socket_kib(100_000, 100_000, 0) is None


def test_deliveries_count_every_message_receiver_pair_and_a_missing_one_in_no_percentile():
    sent = {"a": 10.0, "b": 11.0}
    arrivals = [{"a": 10.010, "b": 11.020}, {"a": 10.030}, {}]
    assert deliveries(sent, arrivals) == {"expected": 6, "received": 3, "missing": 3, "p50_ms": 20.0,
                                          "p99_ms": 30.0, "max_ms": 30.0, "min_ms": 10.0}
    assert deliveries(sent, [{}])["p99_ms"] is None


def test_the_spread_counts_sockets_by_instance_and_cpu_is_per_delivery():
    assert spread(["app2", "app1", "app2", "app3"]) == {"app1": 1, "app2": 2, "app3": 1}
    assert cpu_us_per_delivery(0.25, 500) == 500.0
    assert cpu_us_per_delivery(0.25, 0) is None
    assert ratio(900.0, 300.0) == 3.0
    assert ratio(None, 300.0) is None and ratio(900.0, 0) is None


def test_over_rounds_gives_each_number_its_median_and_range_and_leaves_counts_by_name_per_round():
    rounds = [{"held": 5000, "poll": {"p50_ms": 30.0}, "spread": {"app1": 3}, "gone": None},
              {"held": 4990, "poll": {"p50_ms": 10.0}, "spread": {"app1": 2}, "gone": None},
              {"held": 5000, "poll": {"p50_ms": 20.0}, "spread": {"app1": 1}, "gone": None}]
    assert over_rounds(rounds) == {"held": {"median": 5000, "min": 4990, "max": 5000},
                                   "poll": {"p50_ms": {"median": 20.0, "min": 10.0, "max": 30.0}}, "gone": None}
    # Two rounds: the upper of the middle two, as every benchmark's spread (bench/wrk.py) gives it.
    assert over_rounds([{"held": 4990}, {"held": 5000}]) == {"held": {"median": 5000, "min": 4990, "max": 5000}}


def test_the_hypothesis_checks_the_targets_on_the_rounds_medians_and_names_a_missed_one():
    assert [c.statement for c in sockets_report.hypothesis(idle=50) if "(target" in c.statement] == [
        "p99 ms of a post to the room spread over three instances, Redis layer (target: at most 50)"]
    rounds = {"idle": [{"held": 5000}, {"held": 4990}, {"held": 5000}],
              "fanout-redis": [{"missing": 0, "instances_holding": 3, "p99_ms": p99, "poll": {"missing": 0}}
                               for p99 in (40.0, 60.0, 70.0)]}
    judged = verdict.judge(sockets_report.hypothesis(idle=5000), {name: over_rounds(r) for name, r in rounds.items()})
    unmet = {(c["statement"], c["observed"]) for c in judged["checks"] if not c["met"]}
    assert unmet == {("idle sockets held through HAProxy, of the 5000 opened, in every round", 4990),
                     ("one instance holds at least 5,000 idle sockets (target)", 4990),
                     ("p99 ms of a post to the room spread over three instances, Redis layer (target: at most 50)",
                      60.0)}
    assert len(judged["checks"]) == 6 and not judged["held"]  # fanout-memory did not run: not judged


def test_a_figure_over_rounds_reads_median_then_range():
    assert sockets_report._cell({"median": 12.5, "min": 10.0, "max": 15.0}, ".1f") == "12.5 (10.0-15.0)"
    assert sockets_report._cell({"median": 5000, "min": 5000, "max": 5000}, "g") == "5000"
    assert sockets_report._cell({"median": 2048, "min": 1024, "max": 3072}, ".0f", 1024) == "2 (1-3)"
    assert sockets_report._cell({"median": 70_700, "min": 70_656, "max": 70_800}, ".0f", 1024) == "69"
    assert sockets_report._cell(None, "g") == "-"


IDLE = {"asked": 50, "opened": 50, "refused": {}, "closed_while_held": {"1006": 1}, "server_sockets": 50,
        "rss_before_kib": 70_000, "rss_after_kib": 74_000, "open_seconds": 1.234567}
# Three receivers, two posts: the second receiver never got the second post by push.
FANOUT = {"push": {"nodes": ["app2", "app1", "app3"], "refused": {}, "sent": [1.0, 1.1],
                   "arrivals": [[1.01, 1.12], [1.02, None], [1.03, 1.13]], "duplicates": 0, "cpu_seconds": 0.001},
          "poll": {"sent": [2.0, 2.1], "arrivals": [[2.5, 2.6], [2.4, 2.7], [2.3, 2.8]], "polls": 9,
                   "failed_polls": 0, "cpu_seconds": 0.003}}
PARAMETERS = {"idle": 50, "hold": 1, "batch": 10, "fanout_users": 3, "messages": 2, "spacing": 0.1, "rounds": 1}


def recorded_run(folder, parameters=PARAMETERS):
    """A history as bench-sockets records it (its own recording functions), then its JSON and page as the run
    writes them from it."""
    command = "python -m loadtest bench-sockets --idle 50"
    begun = (sockets_report.started(folder, command=command, parameters=parameters, commit="0123abcd") if parameters
             else history.History(folder / history.FILE, experiment=bench.NAME, command=command))
    with begun as recorded:
        sockets_report.measured(recorded, "idle", 1, IDLE)
        sockets_report.measured(recorded, "fanout-redis", 1, FANOUT)
    return sockets_report.report(folder, page.Run(bench.NAME, command))


def test_recheck_of_a_bench_sockets_history_writes_the_json_the_run_wrote_and_its_verdict(tmp_path, capsys):
    written, judged = recorded_run(tmp_path)
    assert main(["recheck", str(tmp_path)]) == 3  # a socket closed while held, a delivery missing: not held
    assert json.loads((tmp_path / sockets_report.FIGURES).read_text()) == json.loads(json.dumps(written))
    idle, fanout = (r["figures"] for r in written["rounds"])
    assert (idle["held"], idle["memory_per_socket_kib"], idle["open_seconds"]) == (49, 80.0, 1.23)
    assert {key: fanout[key] for key in ("spread", "received", "missing", "p50_ms", "p99_ms", "min_ms")} == {
        "spread": {"app1": 1, "app2": 1, "app3": 1}, "received": 5, "missing": 1, "p50_ms": 20.0, "p99_ms": 30.0,
        "min_ms": 10.0}
    assert (fanout["cpu_us_per_delivery"], fanout["poll"]["p50_ms"], fanout["poll_to_push_cpu"]) == (200.0, 500.0, 2.5)
    assert [c["figure"] for c in judged["checks"] if not c["met"]] == ["held.min", "missing.max"]
    header = json.loads((tmp_path / history.FILE).read_text().splitlines()[0])
    finished = json.loads((tmp_path / page.RUN_FILE).read_text())["finished"]
    assert (written["started"], written["finished"], written["commit"]) == (header["started"], finished, "0123abcd")
    assert "NOT MET" in capsys.readouterr().out


def test_a_bench_sockets_history_without_its_parameters_is_refused_naming_what_is_missing(tmp_path, capsys):
    with pytest.raises(ValueError, match="no parameters"):
        recorded_run(tmp_path, parameters=None)
    assert main(["recheck", str(tmp_path)]) == 1
    assert "its history has no parameters" in capsys.readouterr().err


def test_too_many_sockets_for_the_hard_open_file_limit_are_refused_by_name():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit here to exceed")
    with pytest.raises(ValueError, match=f"the hard limit here is {hard}: raise it"):
        allow_open_files(hard)


@pytest.fixture
def out():
    """A short folder: HAProxy's socket path in it must stay under 98 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_small_run_holds_every_socket_and_delivers_every_message_to_every_user(out):
    done = subprocess.run([sys.executable, "-m", "loadtest", "bench-sockets", "--idle", "50", "--hold", "1",
                           "--fanout-users", "9", "--messages", "5", "--rounds", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode in (0, 3), done.stderr[-3000:] + done.stdout[-2000:]  # 3: a target missed, shown
    assert not list(out.glob("clusters/*/cluster.json")), "a cluster was left up"
    report = json.loads((out / "bench-sockets.json").read_text())
    rounds = {r["config"]: r["figures"] for r in report["rounds"]}
    assert set(rounds) == set(bench.CONFIGS)
    idle = rounds["idle"]
    assert idle["asked"] == idle["opened"] == idle["held"] == 50, idle
    assert idle["refused"] == {} and idle["closed_while_held"] == {}
    assert idle["server_sockets"] == 51  # and the one open when the memory before was read
    assert 0 < idle["rss_before_kib"] < idle["rss_after_kib"] and idle["memory_per_socket_kib"] > 0
    assert idle["open_seconds"] > 0
    for name, instances in (("fanout-redis", 3), ("fanout-memory", 1)):
        figures = rounds[name]
        assert figures["spread"] == {f"app{n}": 9 // instances for n in range(1, instances + 1)}, figures
        assert figures["refused"] == {}  # and the room settled before the posts: else the run raised
        for delivered in (figures, figures["poll"]):
            assert delivered["expected"] == delivered["received"] == 9 * 5 and delivered["missing"] == 0, delivered
            assert 0 < delivered["min_ms"] <= delivered["p50_ms"] <= delivered["p99_ms"] <= delivered["max_ms"]
            assert delivered["cpu_us_per_delivery"] is not None
        assert figures["duplicates"] == 0 and figures["poll"]["failed_polls"] == 0
    unmet = [c for c in report["verdict"]["checks"] if not c["met"] and "(target" not in c["statement"]]
    assert not unmet, unmet
    for line in ("| 50 | 50 | 50 | 0 |", "| fanout-redis | app1 3, app2 3, app3 3 | 45 / 45 |"):
        assert line in done.stdout, done.stdout
    # Every round's readings are in the history, and a recheck from it alone writes the same JSON and verdict.
    assert [(e["config"], e["round"]) for e in history.load(out / history.FILE)[1] if "readings" in e] == [
        (name, 1) for name in bench.CONFIGS]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert report["commit"] == head and report["started"][:19] <= report["finished"][:19]
    assert main(["recheck", str(out)]) == done.returncode
    assert json.loads((out / "bench-sockets.json").read_text()) == report
