"""The nemesis: schedules checked before anything runs, and faults recorded when they were seen to take effect."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from deploy import cluster as deploy_cluster
from deploy import swarm
from deploy.cluster import free_base_port
from loadtest.experiments import rolling
from loadtest.experiments.configs import parse_config
from loadtest.experiments.kill_run import fault_schedule
from loadtest.harness import effects, history, nemesis
from loadtest.harness.nemesis import BROKEN, Step
from loadtest.harness.verdict import judge

ROOT = Path(__file__).resolve().parent.parent
NODES = {"app1", "app2", "app3", "redis1", "redis2", "redis:primary"}


@pytest.mark.parametrize("schedule, problem", [
    ([Step(1, "explode", "app1")], "no action 'explode'"),
    ([Step(1, "kill")], "kill needs a target"),
    ([Step(1, "heal", "app1")], "heal takes no target"),
    ([Step(1, "scale", fields={"count": "2"})], "'count' must be int"),
    ([Step(1, "scale")], "scale needs 'count'"),
    ([Step(1, "kill", "app9")], "the cluster has no app9"),
    ([Step(1, "partition", ["redis1"], {"from": ["nowhere"]}), Step(2, "heal")], "the cluster has no nowhere"),
    ([Step(2, "kill", "app1"), Step(1, "start", "app1")], "in time order"),
    ([Step(-1, "kill", "app1")], "0 or more"),
    ([Step(1, "start", BROKEN)], "no step before it names a node"),
    ([Step(1, "pause", "redis1"), Step(2, "resume", "redis2")], "no later step ends it (resume redis1)"),
    ([Step(1, "partition", ["redis1"]), Step(2, "kill", "app1")], "no later step ends it (heal)"),
])
def test_a_bad_schedule_is_refused_as_a_whole_naming_the_step(schedule, problem):
    with pytest.raises(ValueError, match=r"step \d") as refused:
        nemesis.check(schedule, NODES)
    assert problem in str(refused.value)


def test_under_swarm_a_kill_holds_once_its_slot_has_another_container_and_a_start_once_haproxy_has_it_up():
    # The rows as deploy's status gives them under Docker Swarm (deploy/swarm.py's row, from Docker's task objects):
    # Swarm replaces a killed task at once, and the host cannot reach the overlay address a probe would need.
    def status(state, container, lb_state):
        task = {"Status": {"State": state, "Timestamp": "2026-12-06T23:00:00Z",
                           "ContainerStatus": {"ContainerID": container}},
                "NetworksAttachments": [{"Addresses": ["10.251.250.9/24"]}]}
        row = swarm.row("app1", task, {"10.251.250.9": lb_state}, 8000)
        return {"runtime": "swarm", "stores": [], "instances": [row]}

    before = {"app1": "a" * 12}
    assert not effects.holds("kill", "app1", {}, status("running", "a" * 64, "UP"), before)  # not dead yet
    assert effects.holds("kill", "app1", {}, status("failed", "a" * 64, "DOWN"), before)
    assert effects.holds("kill", "app1", {}, status("starting", "b" * 64, "DOWN"), before)  # already replaced
    assert effects.holds("kill", "app1", {}, status("running", "b" * 64, "UP"), before)
    assert not effects.holds("start", "app1", {}, status("running", "b" * 64, "DOWN 1/2"))
    assert effects.holds("start", "app1", {}, status("running", "b" * 64, "UP"))  # HAProxy's check, no probe


def test_a_lasting_fault_ended_by_its_mending_step_on_the_node_broken_first_is_accepted():
    steps = nemesis.check([(1, "pause", "redis:primary"), (3, "resume", BROKEN),
                           (4, "partition", ["redis1"], {"from": ["redis2"]}), (5, "heal")], NODES)
    assert [step.action for step in steps] == ["pause", "resume", "partition", "heal"]


def test_a_rolling_restart_stops_and_starts_each_instance_in_turn():
    steps = nemesis.rolling_restart(["app1", "app2", "app3"], start=10, spacing=5)
    assert [(s.at, s.action, s.target) for s in steps] == [
        (10, "term", "app1"), (10, "start", "app1"), (15, "term", "app2"), (15, "start", "app2"),
        (20, "term", "app3"), (20, "start", "app3")]
    assert nemesis.check(steps, NODES) == steps
    with pytest.raises(ValueError, match="at least 2 instances"):
        nemesis.rolling_restart(["app1"])


def faults_in(path):
    """The history's faults, in the order they were sent (a fault's last line stands for it)."""
    return sorted((e for e in history.load(path)[1] if e["type"] == "fault"), key=lambda e: e["id"])


def test_a_kill_and_a_start_are_recorded_with_when_each_was_seen_to_take_effect(cluster, tmp_path):
    running = cluster(instances=2, sessions="memory", presence="memory")
    path = tmp_path / history.FILE
    with history.History(path, experiment="test", command="nemesis") as recorded:
        faults = nemesis.Nemesis(recorded, state_dir=running.state_dir)
        with pytest.raises(ValueError, match="step 2"):
            faults.run([Step(0, "kill", "app1"), Step(0, "explode", "app2")])
        assert running.instance("app1")["alive"], "nothing ran before the schedule was refused"
        faults.run([Step(0, "kill", "app1"), Step(0.5, "start", BROKEN)])
        refused = faults.act("start", "app2")  # it runs: deploy refuses, and the nemesis goes on
    kill, start, _ = faults_in(path)
    assert (kill["action"], kill["target"], start["action"], start["target"]) == ("kill", "app1", "start", "app1")
    assert kill["sent"] <= kill["effect"] <= start["sent"] <= start["effect"]
    assert start["ended"] == start["effect"], "a start lasts no time"
    assert start["effect"] <= kill["ended"] < start["effect"] + 1, "the kill ended when the start took effect"
    assert running.instance("app1")["alive"] and running.instance("app1")["lb_state"] == "UP"
    assert refused["effect"] is None
    (note,) = [e for e in history.load(path)[1] if e["type"] == "sample" and e.get("fault") == refused["id"]]
    assert "app2 is already running" in note["refused"]


def test_a_rolling_restart_restarts_every_instance_once_and_haproxy_always_has_one_up(cluster, tmp_path):
    running = cluster(instances=2, sessions="memory", presence="memory")
    before = {row["name"]: row["pid"] for row in running.status()["instances"]}
    runtime = deploy_cluster.load(running.state_dir).runtime
    up_counts, done = [], threading.Event()

    def watch():
        while not done.is_set():
            rows = runtime.stats()
            up_counts.append(sum(rows[name]["status"] == "UP" for name in before))
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    path = tmp_path / history.FILE
    with history.History(path, experiment="test", command="rolling restart") as recorded:
        watcher.start()
        try:
            nemesis.Nemesis(recorded, state_dir=running.state_dir).run(nemesis.rolling_restart(list(before)))
        finally:
            done.set()
            watcher.join()
    faults = faults_in(path)
    assert [(f["action"], f["target"]) for f in faults] == [
        ("term", "app1"), ("start", "app1"), ("term", "app2"), ("start", "app2")]
    assert all(f["effect"] is not None and f["ended"] is not None for f in faults)
    after = {row["name"]: row["pid"] for row in running.status()["instances"]}
    assert all(after[name] != pid for name, pid in before.items()), "every instance restarted"
    assert up_counts and min(up_counts) >= 1, f"HAProxy had no instance up at some poll: {up_counts}"


def test_the_kill_experiments_rolling_restart_restarts_each_instance_over_the_middle_third():
    steps = fault_schedule("rolling-restart", 90, 3)
    assert [(s.at, s.action, s.target) for s in steps] == [
        (30, "term", "app1"), (30, "start", "app1"), (40, "term", "app2"), (40, "start", "app2"),
        (50, "term", "app3"), (50, "start", "app3")]
    with pytest.raises(ValueError, match="at least 2 instances"):
        fault_schedule("rolling-restart", 90, 1)


def test_the_rolling_restarts_hypothesis_memory_loses_about_all_users_a_shared_store_none():
    configs = [parse_config("memory+sticky"), parse_config("redis")]
    figures = {"memory+sticky": {"users_lost_session_pct": 95.0}, "redis": {"users_lost_session": 0}}
    assert judge(rolling.hypothesis(configs), figures)["held"]
    kept = {"memory+sticky": {"users_lost_session_pct": 33.0}, "redis": {"users_lost_session": 0}}
    judged = judge(rolling.hypothesis(configs), kept)
    assert [c["met"] for c in judged["checks"]] == [False, True] and not judged["held"]


@pytest.mark.long
@pytest.mark.timeout(600)
def test_the_kill_experiments_rolling_restart_costs_memory_its_logins_and_redis_none(tmp_path):
    out = tmp_path / "rolling"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "--faults", "rolling-restart", "--configs", "memory+sticky,redis",
         "--users", "8", "--duration", "30", "--warmup", "5", "--out", str(out), "--port", str(free_base_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "hypothesis held" in done.stdout
    results = {r["config"]["name"]: r for r in json.loads((out / "results.json").read_text())["configs"]}
    for name, result in results.items():
        assert [f["action"] for f in result["faults"]] == ["term", "start"] * 3, name
        assert all(f["took"] is not None for f in result["faults"]), f"{name}: a restart never took effect"
    assert json.loads((out / "run.json").read_text())["verdict"]["held"]
