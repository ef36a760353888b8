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
from loadtest.harness import history, recorded
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
    report = stores_report.figures(recorded.parameters(events, "bench"), events)
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


VARIANT = "memory:MIDDLEWARE_OFF=all"


def test_a_row_with_settings_is_reported_against_the_ceiling_and_its_store_as_it_ships(tmp_path):
    # The recorded run, its signed_cookies row renamed a variant of memory (which has no floor of its own).
    kept = [line.replace('"signed_cookies"', f'"{VARIANT}"')
            for line in (RECORDED / history.FILE).read_text().splitlines()
            if '"store":"signed_cookies","mix":"floor_direct"' not in line]
    (tmp_path / history.FILE).write_text("\n".join(kept) + "\n")
    report, _ = stores_report.report(tmp_path, page.Run("bench", "python -m loadtest bench"))
    direct = report["stores"][VARIANT]["poll_direct"]
    # Round by round: the ceiling's server CPU a request over the row's (262.6 / 609.4 and 238.8 / 594.9 µs),
    # the row's over memory's as it ships (609.4 / 556.5 and 594.9 / 456.0 µs).
    assert direct["cpu_to_ceiling"] == {"min": 0.401, "median": 0.431, "max": 0.431}
    assert direct["cpu_to_shipped"] == {"min": 1.095, "median": 1.305, "max": 1.305}
    assert "cpu_to_shipped" not in report["stores"]["memory"]["poll_direct"]
    line = (f"{VARIANT}: the ceiling's CPU a request to its poll mix's 0.43 (0.40-0.43) (memory as it ships: "
            "0.52 (0.47-0.52)); its CPU a request to memory's as it ships 1.30 (1.09-1.30)")
    assert stores_report.variant_lines(report) == [line]
    assert line.replace("'", "&#x27;") in (tmp_path / page.REPORT_FILE).read_text()
    # The 0.8 target is memory's as it ships, the first row, alone.
    assert [t["target"] for t in report["targets"] if "0.8 of the bare Django view" in t["target"]] == [
        "memory's poll mix at least 0.8 of the bare Django view (server CPU a request, every round)"]
