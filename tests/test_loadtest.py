"""The kill experiment: its quick mode end to end, and its arithmetic."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cluster import free_base_port
from loadtest.experiments import sticky_load
from loadtest.experiments.configs import parse_config
from loadtest.experiments.kill_run import fault_schedule
from loadtest.harness.analysis import headline_failures, percentile, summarise
from loadtest.harness.audit import audit_pollers
from loadtest.harness.nemesis import Step

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
        assert result["pollers_audited"] > 0, name
        assert (result["messages_missed_by_pollers"], result["messages_seen_twice_by_pollers"]) == (0, 0), name
        assert result["audit"]["pollers"]["expected"] > 0, name
        assert [f["action"] for f in result["faults"]] == ["kill", "start"], name
    assert results["redis"]["presence_accuracy"] > results["memory+sticky"]["presence_accuracy"]

    report = (out / "report.html").read_text()
    assert "memory+sticky" in report and "<svg" in report
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", report), "the report must work offline"
    summary = (out / "summary.md").read_text()
    assert summary.count("\n|") >= 4 and "polls missed/twice" in summary


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50, 99, 100)
    assert percentile([], 0.5) is None


def raw_run(lost_by_user, acknowledged=3, lost=0, missed=0, sessions="redis", lb="roundrobin"):
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
        "audit": {"acknowledged": acknowledged, "stored": acknowledged - lost, "lost": lost, "duplicated": 0,
                  "pollers": {"users": 4, "expected": 12, "missed": missed, "seen_twice": 0, "examples": []}},
        "recording": {"seconds": seconds, "acknowledged": [], "lost_by_user": lost_by_user,
                      "users": ["a", "b", "c", "d"], "failure_kinds": {"502": 1}, "pollers": {}},
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
    message_missed = summarise(raw_run({}, missed=2))
    assert headline_failures([message_missed]) == ["redis+roundrobin: pollers missed 2 messages and saw 0 twice"]


def test_poller_audit_counts_what_each_cursor_range_missed_or_got_twice():
    stored = {"room0": [1, 2, 4, 7, 9], "room1": [3, 5]}
    pollers = {
        "ada": {"room": "room0", "first_cursor": 1, "last_cursor": 7, "seen": {"2": 1, "7": 1}},  # missed 4
        "bob": {"room": "room0", "first_cursor": 2, "last_cursor": 9, "seen": {"4": 2, "7": 1, "9": 1}},
        "cy": {"room": "room1", "first_cursor": 3, "last_cursor": 5, "seen": {"5": 1}},
        "dee": {"room": "room1", "first_cursor": None, "last_cursor": None, "seen": {}},  # never followed
    }
    audit = audit_pollers(stored, pollers)
    assert (audit["users"], audit["expected"], audit["missed"], audit["seen_twice"]) == (3, 7, 1, 1)
    assert audit["examples"] == [{"user": "ada", "room": "room0", "missed": [4], "seen_twice": []},
                                 {"user": "bob", "room": "room0", "missed": [], "seen_twice": [4]}]


def test_configs_and_schedules_parse():
    assert parse_config("memory+sticky").presence == "memory"
    assert (parse_config("redis").lb, parse_config("redis").presence) == ("roundrobin", "redis")
    with pytest.raises(ValueError, match="session store"):
        parse_config("floppy")
    assert fault_schedule("kill", 90, 3) == [Step(30, "kill", "app1"), Step(60, "start", "app1")]
    assert fault_schedule("scale", 90, 3)[0] == Step(30, "scale", fields={"count": 2})


def test_recorder_counts_ids_from_the_first_cursor_on():
    from loadtest.harness.recorder import Recorder

    recorder = Recorder()
    recorder.polled("ada", "room0", after=None, ids=[], cursor=None)  # an empty room: not following yet
    recorder.polled("ada", "room0", after=None, ids=[1, 2], cursor=2)  # the latest: where following starts
    recorder.polled("ada", "room0", after=2, ids=[3, 4], cursor=4)
    recorder.polled("ada", "room0", after=4, ids=[], cursor=4)
    recorder.polled("ada", "room0", after=3, ids=[4], cursor=4)
    assert recorder.as_json()["pollers"] == {
        "ada": {"room": "room0", "first_cursor": 2, "last_cursor": 4, "seen": {"3": 1, "4": 2}},
    }


def test_recordings_of_several_locust_processes_merge():
    from loadtest.harness.analysis import merge

    one = raw_run({"a": [1004.5]})["recording"]
    two = raw_run({"b": [1005.0]})["recording"]
    merged = merge([one, two])
    assert merged["seconds"]["1003"]["requests"] == 20 and merged["seconds"]["1003"]["failures"] == 2
    assert merged["seconds"]["1003"]["served"] == {"app1": 12, "app2": 8}
    assert set(merged["lost_by_user"]) == {"a", "b"} and merged["failure_kinds"] == {"502": 2}


def test_the_fault_compares_latency_before_and_after_and_the_reading_says_so():
    from loadtest.experiments.kill_readings import plain_reading

    raw = raw_run({})
    for t in range(1003, 1010):
        raw["recording"]["seconds"][str(t)]["latencies"] = [400.0] * 10
    result = summarise(raw)
    assert (result["fault"]["before"]["p99_ms"], result["fault"]["after"]["p99_ms"]) == (50.0, 400.0)
    reading = " ".join(plain_reading([result], "kill"))
    assert "p99 rose from 50 ms" in reading and "ranged" not in reading


def test_the_reading_puts_an_instance_death_at_fleet_scale():
    from loadtest.experiments.kill_readings import plain_reading

    reading = " ".join(plain_reading([summarise(raw_run({"a": [1004.5]}, sessions="memory", lb="sticky"))], "kill"))
    assert "1 of 4 users (25%) lost theirs" in reading and "a fleet of 32,000 loses 32 every day" in reading


def test_an_instance_kill_with_session_writes_reads_its_sessions_without_a_store_fault():
    from loadtest.experiments.kill_readings import plain_reading

    # The scorecard's instance-kill round: memory+sticky has no store a store fault could aim at.
    results = json.loads((ROOT / "docs/results/scorecard/instance-kill/round1/results.json").read_text())["configs"]
    reading = plain_reading(results, "kill")
    assert any(line.startswith("memory+sticky: ") for line in reading)
    assert any(line.startswith("etcd: ") and "nothing waited for a replica" in line for line in reading)


def test_capacity_is_the_highest_step_held_before_two_in_a_row_were_not():
    from loadtest.experiments.capacity import Steps, judge, step_readings
    from loadtest.experiments.capacity_report import capacity_line

    steps = Steps(start_users=10, step=0.5, ramp=1, hold=2, p99_ms=100, failed_pct=0.1, max_users=100)
    fast = {"requests": 10, "failures": 0, "latencies": [5.0] * 10, "sessions_lost": 0, "accuracy": [],
            "served": {}}
    slow = {**fast, "latencies": [500.0] * 10}
    holds = [fast, slow, fast, slow, slow, fast]  # 15 users: somebody else's burst; 33 and 50: the limit
    raw = {"steps": [(1000.0 + 3 * i, users) for i, users in enumerate([10, 15, 22, 33, 50, 75])],
           "seconds": {str(1001 + 3 * i + j): hold for i, hold in enumerate(holds) for j in range(2)}}
    capacity = judge(step_readings(raw, [], steps), steps, "redis")
    assert [row["held"] for row in capacity["steps"]] == [True, False, True, False, False, True]
    assert (capacity["users"], capacity["rps"], capacity["transient"]) == (22, 10.0, [15])
    assert capacity["stopped_by"].startswith("at 33 users: p99 500.0 ms over 100 ms")
    assert "15 users went over the bounds once" in capacity_line(capacity)


def test_a_steps_hold_never_reaches_into_the_next_steps_ramp():
    from loadtest.experiments.capacity import Steps, step_readings

    steps = Steps(start_users=10, step=0.5, ramp=1, hold=3, p99_ms=100, failed_pct=0.1, max_users=100)
    fast = {"requests": 10, "failures": 0, "latencies": [5.0] * 10}
    # The first step's tick came late (1000.9), the next one's early (1003.5): second 1003 is the next ramp's.
    raw = {"steps": [(1000.9, 10), (1003.5, 15)],
           "seconds": {"1002": fast, "1003": {**fast, "latencies": [500.0] * 10}, "1005": fast}}
    first, _ = step_readings(raw, [], steps)
    assert (first["requests"], first["p99_ms"]) == (10, 5.0)


def test_the_capacity_options_of_given_steps_ask_for_those_steps():
    import argparse

    from loadtest.experiments.capacity import Steps, add_step_arguments, step_options, steps_of

    parser = argparse.ArgumentParser()
    add_step_arguments(parser)
    steps = Steps(start_users=100, step=1 / 3, ramp=3, hold=10.5, p99_ms=200, failed_pct=0.5, max_users=900)
    assert steps_of(parser.parse_args(step_options(steps))) == steps
    assert steps_of(parser.parse_args([])) == Steps()


def store_kill(out, configs, timeout):
    """A short store-kill run of `configs` into `out` (8 users, 15 s); each configuration's results, in order."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "--faults", "store-kill", "--configs", configs,
         "--users", "8", "--duration", "15", "--warmup", "4", "--out", str(out), "--port", str(free_base_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())["configs"]


@pytest.mark.timeout(300)
def test_store_kill_under_sentinel_sync_loses_nothing_acknowledged(tmp_path):
    out = tmp_path / "store-kill"
    [result] = store_kill(out, "redis@sentinel-sync1", 280)
    store = result["store"]
    assert [f["action"] for f in result["faults"]] == ["kill", "start"]
    assert result["faults"][0]["target"] == result["faults"][1]["target"] == "redis1"
    assert store["writes_acknowledged"] > 0 and store["logins_acknowledged"] > 0 and store["sessions_read"] > 0
    assert result["messages_acknowledged"] > 0
    # Every acknowledged write waited for a replica, so the failover lost none of them.
    assert (store["writes_lost"], store["logins_lost"], result["messages_lost"], result["messages_duplicated"]) \
        == (0, 0, 0, 0)
    assert store["failover_s"] is not None and result["failures"] > 0  # the kill was felt, then healed
    assert "acked session writes lost" in (out / "summary.md").read_text()


@pytest.mark.timeout(400)
def test_a_store_kill_of_etcd_loses_nothing_acknowledged_and_memcached_comes_back_empty(tmp_path):
    etcd, memcached = store_kill(tmp_path / "store-kill", "etcd,memcached", 380)
    # The schedule aims at etcd:leader (test_the_store_faults_aim_at_the_server_the_sessions_live_on), which
    # deploy resolves to a member when the fault lands; that member is killed and started again, and a session
    # write is acknowledged only once a majority has it.
    assert etcd["faults"][0]["target"] == etcd["faults"][1]["target"] and etcd["faults"][0]["target"][:4] == "etcd"
    assert etcd["store"]["writes_acknowledged"] > 0 and etcd["store"]["logins_acknowledged"] > 0
    assert (etcd["store"]["writes_lost"], etcd["store"]["logins_lost"], etcd["store"]["unreadable"]) == (0, 0, 0)
    # memcached keeps nothing on disk: everybody's session is gone; on the socket the instances know, so
    # every session reads back (none unreadable: the site reaches the restarted memcached).
    assert [f["target"] for f in memcached["faults"]] == ["memcached", "memcached"]
    assert memcached["store"]["sessions_read"] > 0 and memcached["store"]["unreadable"] == 0
    assert memcached["users_lost_session_pct"] > 0 and memcached["store"]["logins_lost"] > 0


def test_topologies_parse_from_config_names():
    sync = parse_config("redis@sentinel-sync1")
    assert (sync.topology.redis, sync.topology.redis_sync, sync.db) == ("sentinel", 1, "sqlite")
    pg = parse_config("db@pg-any1")
    assert (pg.db, pg.topology.pg_standbys, pg.topology.pg_sync) == ("postgres", 2, "ANY 1")
    with pytest.raises(ValueError, match="sentinel-sync<k>"):
        parse_config("redis@raft")
    with pytest.raises(ValueError, match="needs that many replicas"):
        parse_config("redis@sentinel-sync5")
    assert [step.action for step in fault_schedule("store-kill", 90, 3, pg)] == ["kill", "promote", "start"]
    with pytest.raises(ValueError, match="needs replicas"):
        fault_schedule("replica-kill", 90, 3, parse_config("redis"))


def test_the_store_faults_take_latency_and_stalls_through_the_fault_vocabulary():
    from deploy.actions import check
    from deploy.cluster import ACTIONS

    redis = parse_config("redis@sentinel")
    assert fault_schedule("store-latency", 90, 3, redis) == [Step(30, "latency", "redis1", {"ms": 20}),
                                                             Step(60, "latency", "redis1", {"ms": 0})]
    assert fault_schedule("store-stall", 90, 3, parse_config("db@pg-any1")) == [
        Step(30, "stall", "pg1", {"seconds": 5})]
    for step in [*fault_schedule("store-latency", 90, 3, redis), *fault_schedule("store-stall", 90, 3, redis)]:
        assert ACTIONS[step.action] is check(step.action, step.target, step.fields)


def test_a_ledger_counts_acknowledged_writes_a_session_no_longer_shows():
    from loadtest.harness.sessions import Ledger

    ledger = Ledger()
    ledger.logged_in({"sessionid": "a"})
    assert [ledger.written(n, n - 1 if n > 1 else None, {}) for n in (1, 2, 3, 4)] == [0, 0, 0, 0]
    assert ledger.written(5, 2, {}) == 2  # the store went back to 2: 3 and 4 are gone
    assert ledger.lost_above(None) == 3  # 1, 2 and 5 remain acknowledged
    assert ledger.gone() == (3, 1)  # the whole session gone: its writes and its login


def test_the_outage_runs_from_the_fault_to_the_end_of_its_last_failure():
    from loadtest.harness.analysis import outage_seconds

    spans = [(95.0, 95.1), (100.2, 100.3), (100.9, 101.0), (101.8, 102.5), (110.0, 110.1)]
    assert outage_seconds(spans, 100.0, 200.0) == 2.5  # 110 is a failure of its own, not the outage
    assert outage_seconds([(103.0, 103.1)], 100.0, 200.0) == 0


def test_the_replication_grid_has_each_distinct_n_and_k_once():
    from loadtest.bench.replication_report import points

    assert points() == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (4, 0), (4, 1), (4, 3), (4, 4)]


def test_a_write_waiting_for_k_replicas_is_predicted_to_wait_for_the_k_th_nearest():
    from loadtest.bench.replication_report import distances_of, predicted_ms

    assert distances_of(4, (10, 0.5, 40, 2)) == {1: 10, 2: 0.5, 3: 40, 4: 2}
    assert distances_of(3, (2,)) == {1: 2, 2: 2, 3: 2}
    assert predicted_ms(0.3, 4, 0, (10, 0.5, 40, 2)) == 0.3
    assert predicted_ms(0.3, 4, 1, (10, 0.5, 40, 2)) == 0.3 + 2 * 0.5
    assert predicted_ms(0.3, 4, 3, (10, 0.5, 40, 2)) == 0.3 + 2 * 10
    assert predicted_ms(0.3, 2, 2, (10, 0.5, 40, 2)) == 0.3 + 2 * 10


def test_sticky_figures_skew_and_time_to_fair_share():
    assert sticky_load.coefficient_of_variation([300, 300, 300]) == 0
    assert sticky_load.coefficient_of_variation([0, 600, 600]) == 0.707
    # The new instance (app4) serves nothing for 3 s, then its quarter.
    seconds = {str(100 + t): {"served": {"app1": 30, "app2": 30, "app3": 30, "app4": 0 if t < 3 else 30}}
               for t in range(12)}
    figures = sticky_load.share_after(seconds, 99.5, 12, 4)
    assert figures["shares"][:4] == [0.0, 0.0, 0.0, 0.25]
    assert figures["seconds_to_fair_share"] == 3 + sticky_load.SMOOTH
