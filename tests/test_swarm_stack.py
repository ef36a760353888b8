"""The swarm runtime without Docker: its stack file, its address plan, and its command line.

Nothing here starts dockerd (tests/test_swarm.py does, opt-in): the stack
file `up --runtime swarm` writes is checked for the shape the runtime relies
on (the instances as one dnsrr service, HAProxy resolving `tasks.app`, Redis
and PostgreSQL as services, every address in the lab's range), `up` refuses
what Swarm cannot do before it makes anything, the record keeps the runtime,
and `status --json` of a swarm record follows the processes' schema.
"""

import ipaddress
import json
import stat

import pytest
import yaml

from deploy import engine, netns, stack, swarm
from deploy.__main__ import main
from deploy.cluster import Cluster, free_base_port, load, make_private_folder
from loadtest.__main__ import main as loadtest_main
from loadtest.experiments.kill_run import fault_schedule
from loadtest.harness.nemesis import Step

PROCESS_ROW = {"name", "host", "port", "pid", "alive", "lb_state", "state", "role"}
STORE_ROW = {"name", "kind", "role", "state", "host", "port", "socket", "pid", "alive"}


def swarm_record(tmp_path, *, lb="roundrobin", sessions="redis", instances=2):
    make_private_folder(tmp_path / "state")
    cluster = Cluster(state_dir=str(tmp_path / "state"), port=18000, lb=lb, sessions=sessions, presence="redis",
                      db="postgres", secret_key="k" * 50, proxy_secret="p" * 32, runs_on="swarm", stack="lab0abcd",
                      stores={"redis": {"kind": "redis", "port": 6379, "password": "r-secret"},
                              "postgres": {"kind": "postgres", "port": 5432, "password": "pg-secret"}},
                      instances={f"app{n}": {"port": 8000, "slot": n} for n in range(1, instances + 1)})
    cluster.save()
    return cluster


@pytest.fixture
def deploy(capsys):
    """Run `python -m deploy --state-dir TMP/state ...` in this process; return (exit code, stdout, stderr)."""
    def run(tmp_path, *argv):
        code = main(["--state-dir", str(tmp_path / "state"), *argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.mark.parametrize("lb", ["roundrobin", "sticky"])
def test_the_stack_file_has_the_shape_the_swarm_runtime_relies_on(tmp_path, lb):
    cluster = swarm_record(tmp_path, lb=lb, instances=3)
    path = stack.write(cluster, instances=3)
    document = yaml.safe_load(path.read_text())
    assert stack.check_shape(document) == []
    services = document["services"]
    assert set(services) == {"app", "migrate", "haproxy", "redis", "postgres"}
    app = services["app"]
    assert app["deploy"]["replicas"] == 3 and app["deploy"]["endpoint_mode"] == "dnsrr"
    assert app["environment"]["INSTANCE_NAME"] == "app{{.Task.Slot}}"  # rows app1.. by task slot
    assert app["environment"]["DATABASE_URL"].startswith("postgres://lab:pg-secret@postgres:5432/")
    assert app["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert [p["published"] for p in services["haproxy"]["ports"]] == [18000, 18001]
    config = (cluster.path / "haproxy.cfg").read_text()
    assert "server-template task 1-16 tasks.app:8000 resolvers docker" in config
    assert "nameserver dns 127.0.0.11:53" in config
    assert ("dynamic-cookie-key" in config) == (lb == "sticky")
    for written in (path, cluster.path / "haproxy.cfg"):  # both hold secrets
        assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_every_address_docker_gets_is_in_the_lab_s_range_and_clear_of_the_namespaces():
    config = engine.daemon_config()
    blocks = [stack.DAEMON_POOL, stack.GWBRIDGE_SUBNET, stack.SWARM_POOL, stack.STACK_SUBNET,
              ipaddress.ip_network(config["bip"], strict=False),
              *(ipaddress.ip_network(pool["base"]) for pool in config["default-address-pools"])]
    for block in blocks:
        assert block.subnet_of(stack.POOL) and not block.overlaps(netns.SUBNETS), block
    assert not stack.DAEMON_POOL.overlaps(stack.SWARM_POOL)
    # docker_gwbridge is made by the lab with its own subnet: out of both pools, so neither hands it out again.
    assert not any(stack.GWBRIDGE_SUBNET.overlaps(pool) for pool in (stack.DAEMON_POOL, stack.SWARM_POOL))
    assert config["ip"] == "127.0.0.1"  # published ports on loopback only


BROKEN = {
    "a virtual IP": ({"app": {"deploy": {"endpoint_mode": "vip"}}}, "endpoint_mode"),
    "a port through the routing mesh": (
        {"haproxy": {"deploy": {"endpoint_mode": "dnsrr"}, "ports": [{"published": 80, "mode": "ingress"}]}},
        "host mode"),
    "a variable the caller's shell would fill": (
        {"redis": {"deploy": {"endpoint_mode": "dnsrr"}, "command": ["redis-server", "$LAB_PASSWORD"]}}, "lone $"),
    "a subnet outside the lab's range": (
        {"app": {"deploy": {"endpoint_mode": "dnsrr"}}, "networks": {"lab": {"ipam": {"config": [
            {"subnet": "10.250.3.0/24"}]}}}},
        "outside 10.251.0.0/16"),
}


@pytest.mark.parametrize("broken, named", BROKEN.values(), ids=BROKEN.keys())
def test_a_stack_file_of_the_wrong_shape_is_named_wrong(broken, named):
    networks = broken.pop("networks", {})
    problems = stack.check_shape({"services": broken, "networks": networks})
    assert any(named in problem for problem in problems), problems


REFUSED = {
    "partitions": (["--netns"], "--netns"),
    "cgroup quotas": (["--cpu-quota", "0.5"], "--cpu-quota"),
    "pinned cpus": (["--site-cpus", "0"], "--site-cpus"),
    "sentinel": (["--redis", "sentinel"], "--redis sentinel"),
    "redis cluster": (["--redis", "cluster"], "--redis cluster"),
    "standbys": (["--pg-standbys", "1"], "--pg-standbys"),
    "a store swarm does not run": (["--sessions", "memcached"], "memcached"),
    "sqlite": (["--db", "sqlite"], "--db sqlite"),
    "patroni": (["--pg-ha", "patroni"], "--pg-ha patroni"),
    "persistence": (["--redis-persistence", "always"], "--redis-persistence"),
    "power loss": (["--power-loss"], "--power-loss"),
    "latency": (["--latency", "redis1=5"], "--latency"),
    "websockets": (["--channel-layer", "memory"], "--channel-layer"),
}


@pytest.mark.parametrize("argv, named", REFUSED.values(), ids=REFUSED.keys())
def test_up_on_swarm_refuses_what_needs_host_processes_before_making_anything(tmp_path, deploy, argv, named):
    engine_before = engine.load()
    try:
        code, _, err = deploy(tmp_path, "up", "--runtime", "swarm", "--port", str(free_base_port()), *argv)
        assert code == 1
        assert "not under --runtime swarm" in err and named in err, err
        assert not (tmp_path / "state").exists()
        assert engine.load() == engine_before  # no dockerd started, none recorded
    finally:  # had it not refused, what it started goes (a dockerd too, if it started one)
        if (tmp_path / "state").exists():
            deploy(tmp_path, "down")


def test_the_record_remembers_the_runtime(tmp_path):
    swarm_record(tmp_path)
    assert (load(tmp_path / "state").runs_on, load(tmp_path / "state").stack) == ("swarm", "lab0abcd")
    older = json.loads((tmp_path / "state" / "cluster.json").read_text())
    del older["runs_on"], older["stack"]  # a record written before the swarm runtime
    (tmp_path / "state" / "cluster.json").write_text(json.dumps(older))
    assert load(tmp_path / "state").runs_on == "processes"


def test_status_json_of_a_swarm_cluster_follows_the_processes_schema(tmp_path, deploy):
    swarm_record(tmp_path)
    code, out, err = deploy(tmp_path, "status", "--json")
    assert code == 0, err
    state = json.loads(out)
    assert (state["runtime"], state["stack"], state["db"]) == ("swarm", "lab0abcd", "postgres")
    assert [row["name"] for row in state["instances"]] == ["app1", "app2"]
    for row in state["instances"]:
        assert set(row) == PROCESS_ROW | {"container", "started"} and row["pid"] is None
    for row in state["stores"]:
        assert set(row) >= STORE_ROW | {"container", "started"} and row["pid"] is None
    assert {row["kind"] for row in state["stores"]} == {"redis", "postgres"}
    assert set(state["haproxy"]) == {"pid", "alive", "container", "started"}


def test_a_running_task_makes_a_row_with_its_container_and_start():
    task = {"Slot": 2, "DesiredState": "running", "CreatedAt": "2026-12-06T20:00:00Z",
            "Status": {"State": "running", "Timestamp": "2026-12-06T20:00:03Z",
                       "ContainerStatus": {"ContainerID": "0123456789abcdef0123"}},
            "NetworksAttachments": [{"Addresses": ["10.251.64.9/24"]}, {"Addresses": ["10.251.250.7/24"]}]}
    row = swarm.row("app2", task, {"10.251.250.7": "UP"}, 8000)
    assert row == {"name": "app2", "host": "10.251.250.7", "port": 8000, "pid": None, "alive": True,
                   "lb_state": "UP", "state": "up", "role": None, "container": "0123456789ab",
                   "started": "2026-12-06T20:00:03Z"}
    gone = swarm.row("app2", {**task, "Status": {**task["Status"], "State": "failed"}}, {}, 8000)
    assert (gone["alive"], gone["state"], gone["started"]) == (False, "down", None)


@pytest.mark.parametrize("argv", [["pause", "app1"], ["partition", "app1"], ["scale", "3"], ["heal"],
                                  ["kill", "app1", "--signal", "TERM"]])
def test_faults_that_need_host_processes_are_refused_on_swarm(tmp_path, deploy, argv):
    swarm_record(tmp_path)
    code, _, err = deploy(tmp_path, *argv)
    assert code == 1 and "swarm" in err.lower(), err


def test_the_kill_experiment_on_swarm_starts_the_task_right_after_the_kill():
    assert fault_schedule("kill", 90, 3, runtime="swarm") == [Step(30, "kill", "app1"), Step(30, "start", "app1")]
    with pytest.raises(ValueError, match="kill"):
        fault_schedule("scale", 90, 3, runtime="swarm")


def test_the_kill_experiment_on_swarm_needs_a_fixed_load(tmp_path):
    with pytest.raises(SystemExit, match="--users"):
        loadtest_main(["--runtime", "swarm", "--configs", "redis", "--out", str(tmp_path / "out")])
