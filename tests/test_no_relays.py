"""`deploy up --no-relays` (deploy/links.py): no latency relay, every node and instance on its own port.

One real cluster for the module, as a benchmark would start it: Redis under
Sentinel (a primary, a replica, three Sentinels), PostgreSQL with a
streaming standby, one instance; and one of the kinds with more ports:
Redis Cluster (its bus), etcd (its peers' port) and PostgreSQL under
Patroni. The default, relays in front of every node, is tests/test_links.py's.
"""

import json
import socket
from pathlib import Path

import pytest
import redis

from deploy.cluster import DeployError, Topology, alive, etcd, load, ports, up_keywords, up_options
from deploy.kinds import patroninodes
from deploy.layout import behind
from deploy.sources import descendants
from tests import clusters

REFUSED = "this cluster runs without relays (up --no-relays)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("norelays")
    pids = []
    try:
        started = clusters.up(state_dir, "--no-relays", "--instances", "1", "--sessions", "redis",
                              "--presence", "redis", "--redis", "sentinel", "--redis-replicas", "1",
                              "--db", "postgres", "--pg-standbys", "1")
        pids = clusters.recorded_pids(state_dir)
        yield started
    finally:
        clusters.deploy(state_dir, "down", check=False)
    assert not [pid for pid in pids if alive(pid)], "down left processes"


def listener_inodes(port, host=None):
    """The inodes of the sockets listening on TCP `port` (IPv4) at `host`, or at any address."""
    found = []
    for fields in map(str.split, Path("/proc/net/tcp").read_text().splitlines()[1:]):
        address, _, number = fields[1].partition(":")  # the address in hex, in the kernel's byte order
        if int(number, 16) == port and fields[3] == "0A" and (  # 0A: LISTEN
                host is None or bytes.fromhex(address)[::-1] == socket.inet_aton(host)):
            found.append(int(fields[9]))
    return found


def assert_listens_itself(name, process, host, port):
    """Node `name`'s own process (or a child of it) listens at host:port, and nothing 60 above (a relay's target)."""
    inodes = listener_inodes(port, host)
    assert inodes, f"nothing listens on {name}'s {host}:{port}"
    assert all(held_by(process["pid"], inode) for inode in inodes), f"{name}'s {host}:{port} is not its own"
    assert not listener_inodes(behind(port)), f"something listens behind {name}'s port {port}"


def held_by(pid, inode):
    """Whether process pid or a descendant of it holds the socket `inode`."""
    link = f"socket:[{inode}]"
    for each in descendants([pid]):
        try:
            folder = Path(f"/proc/{each}/fd")
            if any(_link(entry) == link for entry in folder.iterdir()):
                return True
        except OSError:
            continue
    return False


def _link(entry):
    try:
        return str(entry.readlink())
    except OSError:
        return ""


def test_no_relay_runs_and_each_node_and_instance_listens_on_its_own_port(lab):
    recorded = load(lab.state_dir)
    assert recorded.relays is False
    assert not recorded.links.get("relays")  # no relay was ever started
    listeners = {**recorded.stores, **recorded.instances}
    assert {"redis1", "redis2", "sentinel1", "sentinel2", "sentinel3", "pg1", "pg2", "app1"} <= set(listeners)
    for name, record in listeners.items():
        assert_listens_itself(name, record, record.get("host") or "127.0.0.1", record["port"])
    # Replication and the Sentinels use those ports: the nodes announce their own.
    primary = redis.Redis(port=recorded.stores["redis1"]["port"], password=recorded.stores["redis1"]["password"])
    assert primary.info("replication")["slave0"]["port"] == recorded.stores["redis2"]["port"]
    watcher = redis.Redis(port=recorded.stores["sentinel1"]["port"],
                          password=recorded.stores["sentinel1"]["password"], decode_responses=True)
    assert watcher.sentinel_master("lab")["port"] == recorded.stores["redis1"]["port"]
    assert lab.roles() == {"redis1": "primary", "redis2": "replica", "sentinel1": "sentinel",
                           "sentinel2": "sentinel", "sentinel3": "sentinel", "pg1": "primary", "pg2": "standby"}


def test_status_says_the_cluster_runs_without_relays(lab):
    state = lab.status()
    assert state["relays"] is False
    assert all(row["relay_cpu_s"] is None and row["latency_ms"] == 0
               for row in [*state["stores"], *state["instances"]])
    assert "relays: none (up --no-relays)" in lab.run("status").stdout


def test_latency_and_stall_are_refused_naming_the_option(lab, tmp_path):
    for command in (("latency", "redis1", "5"), ("latency", "app1", "0"), ("stall", "pg1", "1")):
        done = clusters.deploy(lab.state_dir, *command, check=False)
        assert done.returncode == 1 and REFUSED in done.stderr, (command, done.stderr)
    done = clusters.deploy(tmp_path / "state", "up", "--no-relays", "--latency", "redis1=2", check=False)
    assert done.returncode == 1 and REFUSED in done.stderr and "--latency" in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything started
    # The cluster still serves.
    assert json.loads(lab.run("status", "--json").stdout)["haproxy"]["alive"]


def test_without_relays_no_port_is_reserved_behind_a_node():
    topology = Topology(redis="cluster", redis_shards=1).check()
    relayed = ports(20000, instances=2, servers=["redis", "etcd"], topology=topology)
    alone = ports(20000, instances=2, servers=["redis", "etcd"], topology=topology, relays=False)
    assert {what for what in relayed.values() if what.endswith("behind its relay")} == {
        "redis1 behind its relay", "redis2 behind its relay", "redis1's cluster bus behind its relay",
        "redis2's cluster bus behind its relay", "etcd1 behind its relay", "etcd2 behind its relay",
        "etcd3 behind its relay", "app1 behind its relay", "app2 behind its relay"}
    assert alone == {port: what for port, what in relayed.items() if not what.endswith("behind its relay")}


def test_the_option_reaches_up_from_the_command_line_and_the_control_room():
    assert up_keywords(up_options({}))["relays"] is True
    assert up_keywords(up_options({"no_relays": True}))["relays"] is False
    with pytest.raises(DeployError, match="a flag"):
        up_options({"no_relays": "yes"})


def test_redis_cluster_etcd_and_patroni_nodes_listen_on_their_own_ports_and_announce_them(tmp_path):
    state_dir = tmp_path / "state"
    pids = []
    try:
        lab = clusters.up(state_dir, "--no-relays", "--instances", "1", "--sessions", "etcd", "--presence", "redis",
                          "--redis", "cluster", "--redis-shards", "1", "--db", "postgres", "--pg-ha", "patroni",
                          "--pg-standbys", "1")
        recorded = load(state_dir)
        pids = recorded.pids()
        assert not recorded.links.get("relays")
        stores = recorded.stores
        for name, record in {**stores, **recorded.instances}.items():
            # Under Patroni the port is its PostgreSQL's, a process in a session of its own.
            owner = patroninodes.postmaster(record) if "api_port" in record else record
            assert_listens_itself(name, owner, record.get("host") or "127.0.0.1", record["port"])
        for name in ("etcd1", "etcd2", "etcd3"):
            assert_listens_itself(f"{name}'s peers", stores[name], stores[name]["peer_host"], stores[name]["peer_port"])
        for name in ("redis1", "redis2"):
            assert_listens_itself(f"{name}'s bus", stores[name], "127.0.0.1", stores[name]["bus_port"])
        announced = {line.split()[1] for line in redis.Redis(port=stores["redis1"]["port"],
                                                             password=stores["redis1"]["password"])
                     .execute_command("CLUSTER", "NODES").decode().splitlines()}
        assert announced == {f"127.0.0.1:{stores[n]['port']}@{stores[n]['bus_port']}" for n in ("redis1", "redis2")}
        members = {m["name"]: m for m in etcd._call(stores["etcd1"], "cluster/member/list", {}, 10)["members"]}
        for name in ("etcd1", "etcd2", "etcd3"):
            record = stores[name]
            assert members[name]["clientURLs"] == [f"https://{record['host']}:{record['port']}"]
            assert members[name]["peerURLs"] == [f"https://{record['peer_host']}:{record['peer_port']}"]
        roles = lab.roles()
        assert sorted(roles[name] for name in ("pg1", "pg2")) == ["primary", "replica"], roles
    finally:
        clusters.deploy(state_dir, "down", check=False)
    assert not [pid for pid in pids if alive(pid)], "down left processes"
