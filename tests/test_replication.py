"""Replicated stores: Redis under Sentinel, PostgreSQL with standbys, killed under the site.

Every cluster here is real (`python -m deploy up --redis sentinel`, `--pg-standbys`),
and every wait is a bounded poll with a deadline derived from the topology's
timings (deploy/kinds/sentinel.py) plus a generous margin for a busy machine.
"""

import os
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import psycopg
import pytest
import redis

from deploy import cluster as deploy_cluster
from deploy.cluster import wait_for
from deploy.kinds.pgserver import REPLICATION_ROLE
from deploy.kinds.postgres import COMMIT_TIMEOUT
from deploy.kinds.sentinel import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, SERVICE
from labcore.connections import RedisTarget, redis_client
from tests.http import Browser
from tests.servers import postgres_server

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "correct horse battery"
STORE_TIMEOUT = 0.5  # the site's default
# Sentinel notices a dead primary after DOWN_AFTER_MS, votes and promotes:
# a few seconds; the margin is for a machine busy with other work.
FAILOVER_DEADLINE = DOWN_AFTER_MS / 1000 + 2 * FAILOVER_TIMEOUT_MS / 1000 + 30
SENTINEL = ("--redis", "sentinel", "--redis-replicas", "2")


def sign_up_users(c, count):
    """count users, each signed up and so logged in: an acknowledged session write each."""
    users = []
    for _ in range(count):
        browser = Browser()
        response = browser.sign_up(c.url, f"u{uuid.uuid4().hex[:10]}", PASSWORD)
        assert response.status == 302, response.body[:300]
        users.append(browser)
    return users


def recorded(c, node):
    """A store node's record in the cluster's cluster.json: its port and credentials."""
    return deploy_cluster.load(c.state_dir).stores[node]


def primary(c, kind, roles=None):
    """The one node of kind that says it is primary (in roles, or as c reports them now); None if not one."""
    roles = roles or c.roles()
    prefix = {"redis": "redis", "postgres": "pg"}[kind]
    found = [name for name, role in roles.items() if name.startswith(prefix) and role == "primary"]
    return found[0] if len(found) == 1 else None


def test_sentinel_failover_keeps_synchronous_writes_and_moves_the_primary(cluster):
    c = cluster(instances=2, topology=(*SENTINEL, "--redis-sync", "1"))
    roles = c.roles()
    assert roles == {"redis1": "primary", "redis2": "replica", "redis3": "replica",
                     "sentinel1": "sentinel", "sentinel2": "sentinel", "sentinel3": "sentinel"}
    users = sign_up_users(c, 8)
    counters = {}
    for number, browser in enumerate(users):
        written = browser.post(f"{c.url}/api/session-counter", json_body={"counter": number, "room": "lobby"})
        assert written.status == 200
        counters[browser] = number

    c.run("kill", "redis:primary")
    slowest = 0.0

    def answered_again(site):
        nonlocal slowest
        started = time.monotonic()
        response = users[0].get(f"{site}/api/session-counter")
        slowest = max(slowest, time.monotonic() - started)
        return response.status == 200

    # Each instance finds the new primary on its own clock (its breaker, its answer from the Sentinels:
    # README, "Replicated stores and failover"), so one may serve while the other still answers 503.
    for instance in c.status()["instances"]:
        site = f"http://{instance['host']}:{instance['port']}"
        wait_for(partial(answered_again, site), timeout=FAILOVER_DEADLINE,
                 what=f"{instance['name']} to succeed after the failover", interval=0.1)
    new_primary = wait_for(lambda: primary(c, "redis"), timeout=FAILOVER_DEADLINE, what="a new primary")
    assert new_primary in ("redis2", "redis3")
    assert c.roles()["redis1"] == "down"
    # Fail fast while there is no primary: never a hang (STORE_TIMEOUT plus a busy machine's margin).
    assert slowest < STORE_TIMEOUT + 5, slowest
    # Every acknowledged login and session write was confirmed by a replica before the 200.
    for browser, number in counters.items():
        read = browser.get(f"{c.url}/api/session-counter")
        assert (read.status, read.json()["counter"]) == (200, number)

    # The old primary comes back as a replica of the new one, never as a second primary.
    c.run("start", "redis1")
    wait_for(lambda: c.roles()["redis1"] == "replica", timeout=FAILOVER_DEADLINE, what="redis1 to be a replica")
    # Polled: deploy's probe of a node gives up after one try, so a busy machine can make one reading miss a
    # node. One primary, not necessarily new_primary: with 1 s before a node counts as down, the Sentinels
    # may fail over once more while redis1 copies its primary; never two primaries, never none for long.
    seen = []

    def one_primary():
        seen.append(c.roles())
        return primary(c, "redis", seen[-1])

    try:
        wait_for(one_primary, timeout=FAILOVER_DEADLINE, what="one primary")
    except deploy_cluster.DeployError as exc:
        raise AssertionError(f"{exc}; the last roles seen: {seen[-3:]}") from None


def test_too_few_replicas_is_a_503_naming_redis_never_a_silent_success(cluster):
    c = cluster(instances=1, topology=(*SENTINEL, "--redis-sync", "2"))
    ada = sign_up_users(c, 1)[0]
    c.run("kill", "redis3")
    written = ada.post(f"{c.url}/api/session-counter", json_body={"counter": 1})
    assert (written.status, written.json()["store"]) == (503, "redis")
    # Nor does a login succeed while the write cannot be confirmed.
    assert Browser().sign_up(c.url, f"u{uuid.uuid4().hex[:10]}", PASSWORD).status == 503
    c.run("start", "redis3")
    wait_for(lambda: ada.post(f"{c.url}/api/session-counter", json_body={"counter": 2}).status == 200,
             timeout=FAILOVER_DEADLINE, what="writes to succeed with both replicas back")


def test_a_demoted_primary_sends_the_client_to_the_new_one_after_one_failure(cluster):
    c = cluster(instances=1, topology=SENTINEL)
    state = c.status()
    password = recorded(c, "redis1")["password"]
    # Every node and every Sentinel refuses a client without the cluster's Redis password.
    for row in state["stores"]:
        with redis.Redis(port=row["port"], socket_timeout=5) as stranger, pytest.raises(redis.AuthenticationError):
            stranger.ping()
    sentinels = tuple(("127.0.0.1", row["port"]) for row in state["stores"] if row["kind"] == "sentinel")
    client = redis_client(RedisTarget(f"redis://:{password}@127.0.0.1/0", 2.0, sentinels=sentinels,
                                      service=SERVICE, password=password))
    client.set("before", "1")  # a pooled connection to redis1
    with redis.Redis(port=sentinels[0][1], password=password, socket_timeout=5) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
    # redis1 stays up, demoted: the pooled connection now meets READONLY.
    wait_for(lambda: c.roles()["redis1"] == "replica", timeout=FAILOVER_DEADLINE, what="redis1 to be demoted")
    failures = 0

    def writes():
        nonlocal failures
        try:
            client.set("after", "1")
            return True
        except redis.ConnectionError:
            failures += 1
            return False

    wait_for(writes, timeout=FAILOVER_DEADLINE, what="a write to reach the new primary", interval=0.1)
    assert failures <= 1
    for _ in range(20):
        client.set("after", "2")  # every following write succeeds, on the new primary
    new_port = next(row["port"] for row in c.status()["stores"] if row["role"] == "primary")
    with redis.Redis(port=new_port, password=password) as direct:
        assert direct.get("after") == b"2"


@pytest.mark.parametrize("sync", ["ANY 1"])
def test_postgres_promotion_keeps_synchronous_commits_and_the_old_primary_returns_as_standby(cluster, sync):
    c = cluster(instances=2, sessions="db", presence="redis", db="postgres",
                topology=("--pg-standbys", "2", "--pg-sync", sync))
    assert {n: r for n, r in c.roles().items() if n.startswith("pg")} == {
        "pg1": "primary", "pg2": "standby", "pg3": "standby"}
    assert streaming_roles(recorded(c, "pg1")) == [REPLICATION_ROLE] * 2
    users = sign_up_users(c, 6)

    c.run("kill", "pg:primary")
    promoted = c.run("promote").stdout.split()[0]
    assert promoted in ("pg2", "pg3")
    assert c.roles()[promoted] == "primary"
    # The instances find the new primary without a restart; every acknowledged login is there.
    wait_for(lambda: users[0].get(f"{c.url}/api/me").status == 200, timeout=60, what="the site on the new primary")
    for browser in users:
        assert browser.get(f"{c.url}/api/me").status == 200
    assert sign_up_users(c, 1)

    c.run("start", "pg1")
    wait_for(lambda: c.roles()["pg1"] == "standby", timeout=60, what="pg1 back as a standby")
    assert primary(c, "postgres") == promoted
    new = recorded(c, promoted)
    wait_for(lambda: len(streaming_roles(new)) == 2, timeout=60, what=f"both standbys streaming from {promoted}")
    assert streaming_roles(new) == [REPLICATION_ROLE] * 2


def streaming_roles(record):
    """The roles the standbys of a primary (its record) stream as."""
    with psycopg.connect(host="127.0.0.1", port=record["port"], user=REPLICATION_ROLE,
                         password=record["replication_password"], dbname="postgres") as conn:
        return [row[0] for row in conn.execute("SELECT usename FROM pg_stat_replication WHERE state = 'streaming'")]


def test_a_commit_its_synchronous_standbys_never_confirm_is_a_bounded_503_and_a_retry_finds_it(cluster):
    c = cluster(instances=1, sessions="redis", presence="redis", db="postgres",
                topology=("--pg-standbys", "3", "--pg-sync", "ANY 2"))
    ada = sign_up_users(c, 1)[0]
    room = f"{c.url}/api/rooms/lobby/messages"
    assert ada.post(room, json_body={"text": "all standbys up", "client_id": str(uuid.uuid4())}).status == 201

    c.run("kill", "pg3")
    c.run("kill", "pg4")  # one standby left: "ANY 2" can never be met
    post = {"text": "one standby left", "client_id": str(uuid.uuid4())}
    started = time.monotonic()
    answer = ada.post(room, json_body=post)
    took = time.monotonic() - started
    assert (answer.status, answer.json()["store"]) == (503, "database"), answer.body[:300]
    # Bounded: the commit timeout, plus the cancel's round trip and a busy machine's margin.
    assert COMMIT_TIMEOUT <= took < COMMIT_TIMEOUT + 5, took

    # The commit stayed on the primary: the retry answers with that message, never a second copy.
    again = ada.post(room, json_body=post)
    assert (again.status, again.json()["client_id"], again.json()["text"]) == (200, post["client_id"], post["text"])
    stored = ada.get(f"{room}?limit=100").json()["messages"]
    assert [m["client_id"] for m in stored].count(post["client_id"]) == 1


def test_a_session_update_whose_connection_is_cut_is_a_failed_database_not_a_deleted_session(tmp_path):
    server = postgres_server().start()
    try:
        env = {**os.environ, "DATABASE_URL": server.url, "DJANGO_SETTINGS_MODULE": "labsite.settings",
               "SECRET_KEY": "lost-connection-test", "STATE_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "tests.lost_connection"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=110)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["StoreUnavailable", "database"], done.stdout
