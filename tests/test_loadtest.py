"""The kill experiment: its quick mode end to end, and its arithmetic."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.layout import free_base_port
from loadtest._analysis import headline_failures, percentile, summarise
from loadtest._experiment import fault_schedule, parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_quick_experiment_shows_the_headline_results(tmp_path):
    out = tmp_path / "quick"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "--quick", "--out", str(out), "--port", str(free_base_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "headline results hold" in done.stdout
    results = {r["config"]["name"]: r for r in json.loads((out / "results.json").read_text())["configs"]}

    assert results["memory+sticky"]["users_lost_session"] > 0
    assert results["redis"]["users_lost_session"] == 0
    for name, result in results.items():
        assert result["messages_acknowledged"] > 0, name
        assert (result["messages_lost"], result["messages_duplicated"]) == (0, 0), name
        assert [f["action"] for f in result["faults"]] == ["kill", "start"], name
    assert results["redis"]["presence_accuracy"] > results["memory+sticky"]["presence_accuracy"]

    report = (out / "report.html").read_text()
    assert "memory+sticky" in report and "<svg" in report
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", report), "the report must work offline"
    assert (out / "summary.md").read_text().count("\n|") >= 4


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50, 99, 100)
    assert percentile([], 0.5) is None


def raw_run(lost_by_user, acknowledged=3, lost=0, sessions="redis", lb="roundrobin"):
    start = 1000.0
    seconds = {
        str(t): {"requests": 10, "failures": 1 if t == 1003 else 0, "latencies": [10.0] * 9 + [50.0],
                 "sessions_lost": 1 if t == 1004 else 0, "accuracy": [1.0], "served": {"app1": 6, "app2": 4}}
        for t in range(995, 1010)
    }
    return {
        "config": {"name": f"{sessions}+{lb}", "sessions": sessions, "lb": lb, "presence": "redis"},
        "window_start": start, "duration": 10, "warmup": 5,
        "faults": [{"at": 3.3, "action": "kill", "target": "app1"}],
        "audit": {"acknowledged": acknowledged, "stored": acknowledged - lost, "lost": lost, "duplicated": 0},
        "recording": {"seconds": seconds, "acknowledged": [], "lost_by_user": lost_by_user,
                      "users": ["a", "b", "c", "d"], "failure_kinds": {"502": 1}},
    }


def test_summary_counts_only_the_measured_window():
    result = summarise(raw_run({"a": [998.0], "b": [1004.5]}))
    assert result["requests"] == 100  # 10 s of 10 requests, warm-up excluded
    assert (result["failures"], result["failed_pct"]) == (1, 1.0)
    assert (result["users_lost_session"], result["users_lost_session_pct"]) == (1, 25.0)
    assert (result["p50_ms"], result["p99_ms"]) == (10.0, 50.0)
    assert result["served_share"] == {"app1": 0.6, "app2": 0.4}
    assert result["timeline"]["t"][0] == -5


def test_headline_checks_catch_what_would_break_the_lesson():
    redis_lost = summarise(raw_run({"a": [1004.5]}))
    assert headline_failures([redis_lost]) == [
        "redis+roundrobin lost 1 users' sessions, though its store outlives the instance"]
    memory_kept = summarise(raw_run({}, sessions="memory", lb="sticky"))
    assert headline_failures([memory_kept]) == [
        "memory+sticky lost no session, though its sessions die with the instance"]
    message_lost = summarise(raw_run({}, lost=1))
    assert "1 acknowledged messages lost" in headline_failures([message_lost])[0]


def test_configs_and_schedules_parse():
    assert parse_config("memory+sticky").presence == "memory"
    assert (parse_config("redis").lb, parse_config("redis").presence) == ("roundrobin", "redis")
    with pytest.raises(ValueError, match="session store"):
        parse_config("floppy")
    assert fault_schedule("kill", 90, 3) == [(30, "kill", "app1"), (60, "start", "app1")]
    assert fault_schedule("scale", 90, 3)[0] == (30, "scale", 2)
