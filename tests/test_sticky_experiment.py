"""`python -m loadtest sticky` (loadtest/experiments/sticky.py): each part's figures from hand-written history
events, and recheck of a recorded run.

The fixture is what a small real run saved (its command is in the history's header): its history.jsonl and
sticky.json, as the run wrote them.
"""

import json
import shutil
from pathlib import Path

from loadtest.__main__ import main
from loadtest.experiments import sticky_cpu, sticky_load
from loadtest.harness import history

RECORDED = Path(__file__).parent / "fixtures" / "sticky-run"


def seconds(start, count, served):
    return {str(start + t): {"served": served(t), "failures": 0} for t in range(count)}


def test_skew_counts_the_phases_between_the_faults_and_leaves_the_dead_instance_out_while_it_is_dead():
    # 9 s window: app1 killed at 3 s (took 0.5 s), started at 6 s (took 0.5 s); behind sticky it gets nothing back.
    served = seconds(100, 9, lambda t: {"app1": 10 if t < 3 else 0, "app2": 10 if t < 3 else 15,
                                        "app3": 10 if t < 3 else 15})
    row = sticky_load.skew_row({"lb": "sticky", "users": 6, "duration": 9, "window_start": 100, "seconds": served,
                                "faults": [{"at": 3.0, "took": 0.5}, {"at": 6.0, "took": 0.5}]})
    assert row["before the kill"] == {"served": {"app1": 30, "app2": 30, "app3": 30}, "cv": 0.0}
    assert row["app1 dead"]["cv"] == 0.0  # 4 s to 6 s: app2 and app3 alone, evenly
    assert row["after the restart"] == {"served": {"app1": 0, "app2": 30, "app3": 30}, "cv": 0.707}
    assert row["failed"] == 0


def test_fair_share_is_timed_from_the_scale_outs_sample_and_its_fault():
    observed = {"lb": "sticky", "users": 6, "stay": [1, 3], "instances": 4, "after": 12, "scaled_at": 99.5,
                "seconds": seconds(100, 12, lambda t: {"app1": 30, "app2": 30, "app3": 30,
                                                        "app4": 0 if t < 3 else 30})}
    events = [{"type": "fault", "id": 1, "scenario": "fair share, sticky", "action": "scale", "target": None,
               "sent": 40.0, "effect": 42.34, "ended": 42.34},
              {"type": "sample", "scenario": "fair share, sticky", "at": 93.0, "fair_share": observed}]
    row = sticky_load.share_row(events)
    assert (row["scale_out_s"], row["seconds_to_fair_share"]) == (2.3, 3 + sticky_load.SMOOTH)
    assert row["shares"][:4] == [0.0, 0.0, 0.0, 0.25]


def test_haproxy_cpu_pairs_each_round_with_round_robins_of_the_same_round():
    def cpu(mix, lb, number, us):
        return {"type": "sample", "scenario": "haproxy cpu", "at": float(number),
                "haproxy_cpu": {"mix": mix, "lb": lb, "round": number, "requests": 1000, "rps": 200,
                                "cpu_ticks": 10, "idle_ticks": 1, "us_per_request": us}}

    # Listed out of round order: round 1 of sticky first. Ratios 2.0 (round 0) and 0.5 (round 1).
    events = [cpu(mix, lb, number, us) for mix in ("new", "returning")
              for lb, number, us in (("sticky", 1, 100.0), ("roundrobin", 0, 100.0), ("sticky", 0, 200.0),
                                     ("roundrobin", 1, 200.0))]
    rows = {(r["mix"], r["lb"]): r for r in sticky_cpu.cpu_rows(events)}
    assert rows[("new", "sticky")]["to_roundrobin_range"] == [0.5, 2.0]
    assert rows[("returning", "roundrobin")]["to_roundrobin"] == 1.0
    assert [r["us_per_request"] for r in rows[("new", "sticky")]["rounds"]] == [200.0, 100.0]
    assert set(rows[("new", "sticky")]["rounds"][0]) == {"requests", "rps", "cpu_ticks", "idle_ticks",
                                                         "us_per_request"}


def test_recheck_of_a_recorded_run_reproduces_its_figures_exactly(tmp_path, capsys):
    shutil.copy(RECORDED / history.FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((RECORDED / "sticky.json").read_text())
    assert json.loads((tmp_path / "sticky.json").read_text()) == own
    assert {"skew", "fair_share", "haproxy_cpu"} <= set(own)
    assert (tmp_path / "fair-share.svg").exists() and "report: " in capsys.readouterr().out
