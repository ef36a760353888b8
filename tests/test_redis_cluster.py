"""Redis Cluster under the site: sessions on every shard, and one shard's primary killed.

A real cluster (`python -m deploy up --redis cluster`: three primaries, a
replica each). Waits are bounded polls whose deadlines come from the
cluster's node timeout plus a generous margin for a busy machine.
"""

import time
import uuid

import pytest
import redis
from redis.cluster import key_slot

from deploy import cluster as deploy_cluster
from deploy import netns
from deploy.cluster import DeployError, wait_for
from deploy.kinds import rediscluster
from tests.clusters import recorded_pids
from tests.http import Browser

PASSWORD = "correct horse battery"
STORE_TIMEOUT = 0.5  # the site's default
# Peers mark a silent primary failed after NODE_TIMEOUT_MS, then its replica is elected: seconds.
FAILOVER_DEADLINE = 2 * rediscluster.NODE_TIMEOUT_MS / 1000 + 30
SESSION_KEY_PREFIX = ":1:django.contrib.sessions.cache"  # Django's cache key of a session


def shard_of(browser, ranges):
    """The primary whose slots hold this browser's session."""
    slot = key_slot((SESSION_KEY_PREFIX + browser.cookie("sessionid")).encode())
    return next(name for name, (first, last) in ranges.items() if first <= slot <= last)


def slot_ranges(c):
    return {row["name"]: tuple(int(edge) for edge in row["slots"].split("-"))
            for row in c.status()["stores"] if row.get("slots")}


def replicated(record, replica):
    """True once the replica has everything its primary wrote."""
    with redis.Redis(port=record["port"], password=record["password"], socket_timeout=2) as client:
        written = client.info("replication")["master_repl_offset"]
    with redis.Redis(port=replica["port"], password=replica["password"], socket_timeout=2) as client:
        return client.info("replication").get("slave_repl_offset", -1) >= written


def test_every_cluster_port_bus_included_is_inside_the_clusters_own_block():
    # The default bus port (port + 10000) would leave the block: into the ephemeral
    # range or another cluster's block. Each node's bus port is a slot of the block.
    base = 20000
    for shards in range(1, 5):
        used = deploy_cluster.ports(base, instances=16, servers=["redis"],
                            topology=deploy_cluster.Topology(redis="cluster", redis_shards=shards).check())
        buses = [port for port, what in used.items() if what.endswith("cluster bus")]
        assert len(buses) == len(set(buses)) == rediscluster.node_count(shards)
        assert all(base <= port < base + deploy_cluster.BLOCK for port in used)
    with pytest.raises(DeployError, match="--redis-shards"):
        deploy_cluster.Topology(redis="cluster", redis_shards=5).check()


def test_a_dead_shard_costs_its_own_sessions_until_its_replica_takes_over(cluster):
    c = cluster(instances=2, topology=("--redis", "cluster"))
    assert c.roles() == {"redis1": "primary", "redis2": "primary", "redis3": "primary",
                         "redis4": "replica", "redis5": "replica", "redis6": "replica"}
    ranges = slot_ranges(c)
    assert sorted(ranges.values()) == rediscluster.slot_ranges(3)

    # Users until every shard holds at least two sessions (random keys: bounded tries), each
    # from an address of its own, as separate people: one address may sign up only a few.
    users, names = {}, []
    for number in range(60):
        browser = Browser(source=f"127.0.2.{number + 1}")
        names.append(f"u{uuid.uuid4().hex[:10]}")
        assert browser.sign_up(c.url, names[-1], PASSWORD).status == 302
        written = browser.post(f"{c.url}/api/session-counter", json_body={"counter": number})
        assert written.status == 200, written.body[:300]
        users[browser] = (shard_of(browser, ranges), number)
        if all(sum(shard == name for shard, _ in users.values()) >= 2 for name in ranges):
            break
    assert all(sum(shard == name for shard, _ in users.values()) >= 2 for name in ranges)
    for browser, (_, number) in users.items():
        read = browser.get(f"{c.url}/api/session-counter")
        assert (read.status, read.json()["counter"]) == (200, number)
    # The other Redis users: login throttle counters, presence (rooms on several shards), the lease.
    assert Browser().log_in(c.url, names[0], "not the password").status == 200
    assert Browser().log_in(c.url, names[0], PASSWORD).status == 302
    first = next(iter(users))
    for room in ("lobby", "kitchen", "garden", "attic"):
        seen = first.post(f"{c.url}/api/rooms/{room}/presence", json_body={})
        assert seen.status == 200 and seen.json()["online"] == [names[0]], seen.body[:300]
    wait_for(lambda: first.get(f"{c.url}/api/lease").json()["lease"]["held"], timeout=30,
             what="an instance to hold the maintenance lease")

    # Replication is asynchronous: let redis4 catch up, so the kill loses nothing acknowledged.
    stores = deploy_cluster.load(c.state_dir).stores
    wait_for(lambda: replicated(stores["redis1"], stores["redis4"]), timeout=30, what="redis4 to copy redis1")
    c.run("kill", "redis1")
    dead = {browser: number for browser, (shard, number) in users.items() if shard == "redis1"}
    live = {browser: number for browser, (shard, number) in users.items() if shard != "redis1"}
    # A room whose keys (hash tag: the room) are on a live shard.
    live_room = next(room for room in ("lobby", "kitchen", "garden", "attic")
                     if not ranges["redis1"][0] <= key_slot(room.encode()) <= ranges["redis1"][1])
    refused, slowest = 0, 0.0

    def dead_shard_answers():
        nonlocal refused, slowest
        for browser, number in live.items():
            read = browser.get(f"{c.url}/api/session-counter")
            assert (read.status, read.json()["counter"]) == (200, number), read.body[:300]
        seen = next(iter(live)).post(f"{c.url}/api/rooms/{live_room}/presence", json_body={})
        assert seen.status == 200, seen.body[:300]
        statuses = []
        for browser in dead:
            started = time.monotonic()
            read = browser.get(f"{c.url}/api/session-counter")
            slowest = max(slowest, time.monotonic() - started)
            assert read.status in (200, 503), (read.status, read.body[:300])
            if read.status == 503:
                assert read.json()["store"] == "redis", read.body[:300]
                refused += 1
            statuses.append(read.status)
        return all(status == 200 for status in statuses)

    wait_for(dead_shard_answers, timeout=FAILOVER_DEADLINE, what="the dead shard's sessions to answer again",
             interval=0.1)
    assert refused, "no request met the dead shard before its replica took over"
    # Fast 503s, never a hang: one STORE_TIMEOUT at most, plus a busy machine's margin.
    assert slowest < STORE_TIMEOUT + 5, slowest
    for browser, number in dead.items():
        read = browser.get(f"{c.url}/api/session-counter")
        assert (read.status, read.json()["counter"]) == (200, number)
    roles = c.roles()
    assert (roles["redis1"], roles["redis4"]) == ("down", "primary")
    assert slot_ranges(c)["redis4"] == ranges["redis1"]


def test_with_netns_each_node_serves_from_its_namespace_and_down_removes_them(cluster):
    if reason := netns.available():
        pytest.skip(reason)
    c = cluster(instances=1, sessions="redis", presence="memory", topology=("--redis", "cluster", "--netns"))
    recorded = deploy_cluster.load(c.state_dir)
    addresses = {name: recorded.host(name) for name in recorded.stores}
    assert len(set(addresses.values())) == 6 and not any(a.startswith("127.") for a in addresses.values())
    # Every node, and CLUSTER SLOTS (what the site's client follows), names the namespaces' addresses.
    record = recorded.stores["redis1"]
    with redis.Redis(host=record["host"], port=record["port"], password=record["password"],
                     socket_timeout=2, decode_responses=True) as client:
        listed = {(node[0], int(node[1])) for _, _, *nodes in client.cluster("SLOTS") for node in nodes}
    assert listed == {(addresses[name], r["port"]) for name, r in recorded.stores.items()}
    browser = Browser()
    assert browser.sign_up(c.url, "netns-user", PASSWORD).status == 302
    assert Browser().log_in(c.url, "netns-user", PASSWORD).status == 302
    written = browser.post(f"{c.url}/api/session-counter", json_body={"counter": 7})
    assert written.status == 200, written.body[:300]
    assert browser.get(f"{c.url}/api/session-counter").json()["counter"] == 7

    pids, prefix = recorded_pids(c.state_dir), netns.prefix_for(c.state_dir.resolve())
    assert {f"{prefix}-redis{n}" for n in range(1, 7)} <= set(netns.namespaces(prefix))
    c.run("down")
    assert netns.namespaces(prefix) == [] and not any(deploy_cluster.alive(pid) for pid in pids)
