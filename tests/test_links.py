"""Latency and stalls on a running cluster (deploy/links.py): measured end to end through real servers.

One Sentinel cluster on loopback (a primary, two replicas, three Sentinels, one instance) for the module,
every latency set back to 0 after each test (a connection's other end found by its process); a cluster in
network namespaces of its own for `up --latency`, etcd and `down` (found by its address).

Tolerance, as tests/test_latency.py: the shortest of 21 round trips, at least the setting (a busy machine
only ever adds time) and at most 10 % or 1.5 ms above it.
"""

import time
from pathlib import Path

import pytest
import redis

from deploy import latency
from deploy.cluster import alive, etcd, load, netns
from deploy.layout import behind
from tests import clusters

TRIES = 21


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("links")
    try:
        yield clusters.up(state_dir, "--instances", "1", "--sessions", "redis", "--presence", "redis",
                          "--redis", "sentinel", "--redis-replicas", "2")
    finally:
        clusters.deploy(state_dir, "down", check=False)


@pytest.fixture
def lab(sentinel):
    yield sentinel
    for row in sentinel.status()["stores"]:
        if row["latency_ms"]:
            sentinel.run("latency", row["name"], "0")


def node(lab, name):
    return load(lab.state_dir).stores[name]


def client(lab, name, *, past_relay=False):
    record = node(lab, name)
    port = behind(record["port"]) if past_relay else record["port"]
    return redis.Redis(host=record["host"], port=port, password=record["password"], socket_timeout=30)


def shortest_ms(call):
    call()  # connected and signed in first
    times = []
    for _ in range(TRIES):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def assert_about(measured, expected):
    assert expected <= measured <= expected + max(0.1 * expected, 1.5), (measured, expected)


def test_latency_set_on_a_running_node_is_added_to_each_round_trip(lab):
    lab.run("latency", "redis1", "5")
    direct = shortest_ms(client(lab, "redis1", past_relay=True).ping)
    assert_about(shortest_ms(client(lab, "redis1").ping) - direct, 2 * 5)


def wait_for_all(connection):
    """A write and a WAIT for both replicas, sent together: one round trip to the primary, one to each replica."""
    def write():
        pipeline = connection.pipeline(transaction=False)
        pipeline.set("links:key", "value")
        pipeline.execute_command("WAIT", 2, 5000)
        assert pipeline.execute() == [True, 2]
    return write


def test_delays_add_along_a_path(lab):
    primary = client(lab, "redis1")
    lab.run("latency", "redis2", "3")
    # The write waits for redis2's acknowledgement: 3 ms each way between redis1 and redis2.
    assert_about(shortest_ms(wait_for_all(primary)), 2 * 3)
    lab.run("latency", "redis1", "2")
    # The client to redis1: 2 ms each way; redis1 to redis2: 2 + 3 ms each way.
    assert_about(shortest_ms(wait_for_all(primary)), 2 * 2 + 2 * (2 + 3))


def test_100_pipelined_commands_through_a_10_ms_link_wait_once(lab):
    lab.run("latency", "redis1", "10")
    connection = client(lab, "redis1")
    connection.ping()
    pipeline = connection.pipeline(transaction=False)
    for _ in range(100):
        pipeline.ping()
    began = time.perf_counter()
    assert pipeline.execute() == [True] * 100
    took = time.perf_counter() - began
    assert 0.02 <= took < 0.5, took  # about 20 ms; one round trip each would be 2 s


def test_nothing_bypasses_a_relay(lab):
    recorded = load(lab.state_dir)
    ports = {name: record["port"] for name, record in recorded.stores.items()}
    replicas = client(lab, "redis1").info("replication")
    assert sorted(replicas[f"slave{n}"]["port"] for n in (0, 1)) == [ports["redis2"], ports["redis3"]]
    watcher = redis.Redis(port=ports["sentinel1"], password=recorded.stores["sentinel1"]["password"],
                          decode_responses=True)
    assert sorted(int(r["port"]) for r in watcher.sentinel_slaves("lab")) == [ports["redis2"], ports["redis3"]]
    assert sorted(int(s["port"]) for s in watcher.sentinel_sentinels("lab")) == [ports["sentinel2"],
                                                                                 ports["sentinel3"]]
    assert watcher.sentinel_master("lab")["port"] == ports["redis1"]
    # And the connections the nodes and the instance opened came through the primary's relay, each known.
    seen = latency.status(recorded.links["relays"]["redis1"]["control"])["redis1"]["from"]
    assert {"redis2", "redis3", "sentinel1", "sentinel2", "sentinel3", "app1"} <= set(seen), seen


def test_a_stalled_node_holds_a_request_until_the_stall_ends_on_the_same_connection(lab):
    connection = client(lab, "redis1")
    before = connection.client_id()
    lab.run("stall", "redis1", "2")
    began = time.monotonic()  # the stall began before the command returned: at most 2 s of it are left
    assert connection.ping()
    assert time.monotonic() - began >= 1.0, "the ping was answered while the link was stalled"
    assert connection.client_id() == before  # the same connection, held open through the stall


def test_status_gives_each_node_and_instance_its_latency(lab):
    lab.run("latency", "redis2", "2.5", "--jitter", "0.5")
    assert lab.status()["relays"] is True  # the default (tests/test_no_relays.py has up --no-relays)
    rows = {row["name"]: row for row in [*lab.status()["stores"], *lab.status()["instances"]]}
    assert (rows["redis2"]["latency_ms"], rows["redis2"]["jitter_ms"]) == (2.5, 0.5)
    assert all(row["latency_ms"] == 0 for name, row in rows.items() if name != "redis2")
    assert all(isinstance(row["relay_cpu_s"], float | int) and row["relay_cpu_s"] >= 0 for row in rows.values())
    table = {line.split()[0]: line for line in lab.run("status").stdout.splitlines()[2:]}
    # Its role as status gave it: the stall test before this one may have made the Sentinels fail over.
    assert table["redis2"].endswith(f"{rows['redis2']['role']} (2.5 ms away +-0.5)") and "away" not in table["redis1"]
    lab.run("latency", "redis2", "0")
    assert lab.status()["stores"][1]["latency_ms"] == 0


def test_bad_latency_requests_say_what_was_wrong(lab, tmp_path):
    done = clusters.deploy(lab.state_dir, "latency", "redis9", "5", check=False)
    assert done.returncode == 1 and "no instance or store node 'redis9'" in done.stderr
    done = clusters.deploy(lab.state_dir, "latency", "redis1", "-1", check=False)
    assert "must be a number of milliseconds from 0 to 60000" in done.stderr
    done = clusters.deploy(lab.state_dir, "stall", "redis1", "0", check=False)
    assert "a stall lasts more than 0 and at most 3600 seconds" in done.stderr
    done = clusters.deploy(tmp_path / "state", "up", "--latency", "redis9=2", check=False)
    assert "--latency names 'redis9', which is not a node behind a relay here" in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything started
    done = clusters.deploy(tmp_path / "state", "up", "--latency", "redis1=far", check=False)
    assert "--latency wants NAME=MS" in done.stderr


def test_in_namespaces_etcd_is_relayed_too_and_down_leaves_no_relay(tmp_path):
    if reason := netns.available():
        pytest.skip(reason)
    state_dir = tmp_path / "state"
    try:
        lab = clusters.up(state_dir, "--instances", "1", "--sessions", "etcd", "--presence", "redis", "--netns",
                          "--latency", "redis1=3,app1=1,etcd2=2")
        rows = {row["name"]: row for row in [*lab.status()["stores"], *lab.status()["instances"]]}
        assert (rows["redis1"]["latency_ms"], rows["app1"]["latency_ms"], rows["etcd2"]["latency_ms"]) == (3, 1, 2)
        direct = shortest_ms(client(lab, "redis1", past_relay=True).ping)
        assert_about(shortest_ms(client(lab, "redis1").ping) - direct, 2 * 3)
        recorded = load(state_dir)
        members = etcd._call(recorded.stores["etcd1"], "cluster/member/list", {}, 10)["members"]
        named = {member["name"]: member for member in members}
        for name in ("etcd1", "etcd2", "etcd3"):  # what each advertises is its relay's
            record = recorded.stores[name]
            assert named[name]["clientURLs"] == [f"https://{record['host']}:{record['port']}"]
            assert named[name]["peerURLs"] == [f"https://{record['host']}:{etcd.PEER_PORT}"]
        # Each connection known by the address it came from: the other members, and the instance.
        peers = latency.status(recorded.links["relays"]["etcd2"]["control"])["etcd2-peers"]
        assert set(peers["from"]) == {"etcd1", "etcd3"} and peers["delay_ms"] == 2
        assert "app1" in latency.status(recorded.links["relays"]["redis1"]["control"])["redis1"]["from"]
        relays = [record["pid"] for record in recorded.links["relays"].values()]
        assert len(relays) == 5 and all(alive(pid) for pid in relays)  # redis1, etcd1..3, app1
    finally:
        clusters.deploy(state_dir, "down", check=False)
    assert not any(alive(pid) for pid in relays)
    assert not Path(recorded.links["folder"]).exists()


def test_redis_cluster_nodes_announce_their_relays_and_a_far_replica_slows_wait(tmp_path):
    state_dir = tmp_path / "state"
    try:
        lab = clusters.up(state_dir, "--instances", "1", "--sessions", "redis", "--presence", "memory",
                          "--redis", "cluster", "--redis-shards", "1", "--latency", "redis2=3")
        recorded = load(state_dir).stores
        announced = {line.split()[1] for line in client(lab, "redis1").execute_command("CLUSTER", "NODES")
                     .decode().splitlines()}
        assert announced == {f"127.0.0.1:{recorded[name]['port']}@{recorded[name]['bus_port']}"
                             for name in ("redis1", "redis2")}
        primary = client(lab, "redis1")

        def write():
            pipeline = primary.pipeline(transaction=False)
            pipeline.set("{links}key", "value")
            pipeline.execute_command("WAIT", 1, 5000)
            assert pipeline.execute() == [True, 1]
        assert_about(shortest_ms(write), 2 * 3)  # the replica's acknowledgement, 3 ms away each way
    finally:
        clusters.deploy(state_dir, "down", check=False)
