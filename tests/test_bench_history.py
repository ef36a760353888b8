"""`bench` saves its history, and `recheck` computes its tables and targets again from that history alone.

The fixture is the history.jsonl and the bench.json of one small real run
(`python -m loadtest bench --stores memory,signed_cookies --rounds 2
--seconds 1 --connections 2`), kept as the run wrote them: no cluster here,
well under a second.
"""

import json
import shutil
from pathlib import Path

from loadtest.__main__ import main
from loadtest.bench import stores_report
from loadtest.harness import history
from loadtest.reports import page

RECORDED = Path(__file__).parent / "fixtures" / "bench-run"


def test_recheck_of_a_recorded_bench_run_reproduces_bench_json_exactly(tmp_path, capsys):
    shutil.copy(RECORDED / history.FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((RECORDED / "bench.json").read_text())
    assert json.loads((tmp_path / "bench.json").read_text()) == own
    assert [t["met"] for t in own["targets"]].count(False) > 0  # unmet targets do not change the exit status
    assert f"report: {tmp_path / page.REPORT_FILE}" in capsys.readouterr().out


def test_the_recorded_history_holds_every_wrk_run_of_every_round_and_the_store_commands():
    _, events = history.load(RECORDED / history.FILE)
    runs = [e for e in events if "wrk" in e]
    # Per round: the ceiling, and per store (both ours, so both with a floor) the poll mix direct, its floor,
    # the poll mix through HAProxy and logins; then the load balancer's three pairs of one-connection runs.
    assert len(runs) == 2 * (1 + 4 + 4) + 3 * 2
    assert {e["store"] for e in events if "commands" in e} == {"memory", "signed_cookies"}
    report = stores_report.figures(events)
    assert report["raw"]["memory"]["poll_direct"] == [e["wrk"] for e in runs
                                                      if (e["store"], e["mix"]) == ("memory", "poll_direct")]


def test_the_bench_page_shows_the_tables_and_every_target(tmp_path):
    shutil.copy(RECORDED / history.FILE, tmp_path)
    report, verdict = stores_report.report(tmp_path, page.Run("bench", "python -m loadtest bench"))
    html = (tmp_path / page.REPORT_FILE).read_text()
    assert verdict is None
    assert all(target["target"].replace("'", "&#x27;") in html for target in report["targets"])
    assert "signed_cookies" in html and "floor µs" in html
    assert json.loads((tmp_path / page.RUN_FILE).read_text())["kind"] == "bench"
