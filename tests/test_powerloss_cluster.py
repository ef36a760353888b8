"""`deploy up --power-loss` and `deploy powerloss STORE`: what each setting keeps of the session writes the site
acknowledged, when the sessions' store loses its power while they are made: Redis with each
`--redis-persistence`, PostgreSQL with `--pg-synchronous-commit` on and off.

A writer keeps writing each user's session counter (POST
/api/session-counter, 200 = acknowledged) until its first failure after the
power loss was asked for, so its last acknowledged writes are at most one
request older than the kill. Then every user reads its counter back.
Mounting needs root and /dev/fuse.
"""

import os
import threading
import uuid

import pytest

from deploy import cluster as deploy_cluster
from deploy import powerloss
from deploy.cluster import DeployError, Topology, running, wait_for
from tests.http import Browser

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="FUSE mounts need root and /dev/fuse")

USERS = 4
PASSWORD = "correct horse battery"


@pytest.mark.parametrize("topology, says", [
    (Topology(redis="sentinel", power_loss=True), "--power-loss puts the data of Redis alone"),
    (Topology(pg_ha="patroni", power_loss=True), "or --pg-ha patroni"),
    (Topology(redis_persistence="sometimes"), "--redis-persistence 'sometimes' is not one of: none, everysec"),
    (Topology(pg_synchronous_commit="maybe"), "--pg-synchronous-commit wants on or off"),
])
def test_a_setting_with_no_disk_or_no_meaning_is_refused_naming_it(topology, says):
    with pytest.raises(DeployError, match=says):
        topology.check()


def writes_through_a_power_loss(c, store="redis"):
    """Sign up USERS users, write their counters until `store` loses its power; return (users, last
    acknowledged counter of each)."""
    users = []
    for _ in range(USERS):
        browser = Browser()
        assert browser.sign_up(c.url, f"u{uuid.uuid4().hex[:10]}", PASSWORD).status == 302
        users.append(browser)
    acknowledged, asked = {}, threading.Event()
    written = [0]

    def writer():
        counter = 0
        while True:
            for number, browser in enumerate(users):
                counter += 1
                try:
                    ok = browser.post(f"{c.url}/api/session-counter", json_body={"counter": counter}).status == 200
                except OSError:
                    ok = False
                if ok:
                    acknowledged[number] = counter
                    written[0] += 1
                elif asked.is_set():
                    return  # the power is off: nothing after this was acknowledged

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: written[0] >= 100, timeout=60, what="100 acknowledged session writes")
    asked.set()
    deploy_cluster.act("powerloss", store, state_dir=c.state_dir)
    thread.join(timeout=60)
    assert not thread.is_alive()
    return users, acknowledged


def kept(c, users, acknowledged):
    """How many users' sessions still hold their last acknowledged counter.

    A 503 names a store that did not answer (an instance's pooled connection
    to the Redis that died, or Redis loading its file): no answer yet about
    the session, so it is asked again.
    """
    def holds(number, browser):
        answer = wait_for(lambda: (got := browser.get(f"{c.url}/api/session-counter")).status != 503 and got,
                          timeout=30, what="an answer from the site's Redis")
        return answer.status == 200 and answer.json()["counter"] == acknowledged[number]

    return sum(holds(number, browser) for number, browser in enumerate(users))


def down_leaves_no_mount(c):
    disks = [record["disk"] for record in deploy_cluster.load(c.state_dir).stores.values() if "disk" in record]
    assert disks
    c.run("down")
    assert not any(powerloss.mounted(disk["mountpoint"]) or running(disk) for disk in disks)


def up(cluster, persistence):
    return cluster(instances=1, sessions="redis", presence="memory",
                   topology=("--redis-persistence", persistence, "--power-loss"))


def test_appendfsync_always_loses_no_acknowledged_session_write(cluster):
    c = up(cluster, "always")
    users, acknowledged = writes_through_a_power_loss(c)
    assert kept(c, users, acknowledged) == USERS
    down_leaves_no_mount(c)


def test_appendfsync_everysec_loses_acknowledged_session_writes(cluster):
    """What `always` keeps: the writes since the last fsync, at most a second or two old."""
    c = up(cluster, "everysec")
    users, acknowledged = writes_through_a_power_loss(c)
    assert kept(c, users, acknowledged) < USERS, "every session write was fsynced before the power loss"
    down_leaves_no_mount(c)


@pytest.mark.long
def test_without_persistence_a_power_loss_loses_every_session(cluster):
    c = up(cluster, "none")
    users, acknowledged = writes_through_a_power_loss(c)
    assert kept(c, users, acknowledged) == 0
    assert all(browser.get(f"{c.url}/api/me").status != 200 for browser in users), "a session survived"
    down_leaves_no_mount(c)


def up_postgres(cluster, synchronous_commit):
    return cluster(instances=1, sessions="db", presence="memory", db="postgres",
                   topology=("--pg-standbys", "1", "--pg-synchronous-commit", synchronous_commit, "--power-loss"))


@pytest.mark.long
def test_postgres_synchronous_commit_on_loses_no_acknowledged_session_write(cluster):
    """Both nodes lose their power: a commit was flushed to the primary's WAL before it was answered."""
    c = up_postgres(cluster, "on")
    users, acknowledged = writes_through_a_power_loss(c, "postgres")
    assert kept(c, users, acknowledged) == USERS
    down_leaves_no_mount(c)


@pytest.mark.long
def test_postgres_synchronous_commit_off_loses_acknowledged_session_writes(cluster):
    """What `on` keeps: the commits the WAL writer had not flushed yet (it flushes every 200 ms)."""
    c = up_postgres(cluster, "off")
    users, acknowledged = writes_through_a_power_loss(c, "postgres")
    assert kept(c, users, acknowledged) < USERS, "every commit was flushed before the power loss"
    down_leaves_no_mount(c)
