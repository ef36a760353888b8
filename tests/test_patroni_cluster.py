"""`deploy up --pg-ha patroni`: the site on PostgreSQL under Patroni, with its etcd members, through `python -m deploy`.

One cluster for the module (two instances, sessions in the database, two
nodes in synchronous mode "FIRST 1", three etcd members), in this order:
its status, PostgreSQL killed alone, the primary's node killed under
writes, the old primary started again (with --long), `down`. Every wait is a bounded
poll; the failover's deadline is the issue's, ttl + loop_wait + 5 s.
"""

import os
import shutil
import tempfile
import time
import uuid

import psycopg
import pytest

from deploy import cluster as deploy_cluster
from deploy.cluster import running, wait_for
from deploy.kinds import patroninodes
from tests import clusters
from tests.http import Browser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Patroni runs PostgreSQL as `postgres`: root only")

PASSWORD = "correct horse battery"
SETTINGS = patroninodes.LAB
# The dead leader's key expires (ttl), a standby looks (loop_wait), promotes, and the instances' next
# connection finds it: the target.
FOLLOWED_WITHIN = SETTINGS.ttl + SETTINGS.loop_wait + 5


@pytest.fixture(scope="module")
def site():
    state_dir = tempfile.mkdtemp(prefix="lab-test-patroni-cluster-")
    try:
        yield clusters.up(state_dir, "--instances", "2", "--sessions", "db", "--presence", "memory",
                          "--db", "postgres", "--pg-standbys", "1", "--pg-sync", "FIRST 1", "--pg-ha", "patroni")
    finally:
        clusters.deploy(state_dir, "down", check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


def records(site):
    return deploy_cluster.load(site.state_dir).stores


def pg_roles(site):
    return {name: role for name, role in site.roles().items() if name.startswith("pg")}


def healthy(site, *, synchronous=True):
    """Wait for one primary and every other node a replica, named synchronous standby if `synchronous` (in
    synchronous mode Patroni promotes no other); return the primary's name."""
    def ready():
        rows = {row["name"]: row for row in site.status()["stores"] if row["kind"] == "postgres"}
        primaries = [name for name, row in rows.items() if row["role"] == "primary"]
        standbys = [name for name, row in rows.items()
                    if row["role"] == "replica" and (row["synchronous"] or not synchronous)]
        return len(primaries) == 1 and len(standbys) == len(rows) - 1 and primaries[0]

    return wait_for(ready, timeout=120, what="one primary and its standbys")


def post(browser, site, text):
    """Post a message; its client_id if the site acknowledged it, else None."""
    client_id = str(uuid.uuid4())
    answer = browser.post(f"{site.url}/api/rooms/lobby/messages", json_body={"text": text, "client_id": client_id})
    return client_id if answer.status in (200, 201) else None


def stored_client_ids(record):
    """The client_ids of the messages one node holds (read-only is fine: a replica too)."""
    with psycopg.connect(host=record["host"], port=record["port"], user="lab", password=record["password"],
                         dbname="lab", connect_timeout=5) as connection:
        return {str(row[0]) for row in connection.execute("SELECT client_id FROM chat_message")}


@pytest.fixture(scope="module")
def user(site):
    browser = Browser()
    assert browser.sign_up(site.url, f"u{uuid.uuid4().hex[:10]}", PASSWORD).status == 302
    return browser


def test_any_k_is_refused_naming_patronis_missing_quorum_commit(tmp_path):
    done = clusters.deploy(tmp_path / "refused", "up", "--db", "postgres", "--pg-standbys", "2", "--pg-sync",
                           "ANY 1", "--pg-ha", "patroni", check=False)
    assert done.returncode == 1
    assert "Patroni 3.0.2 does not have" in done.stderr and "quorum commit" in done.stderr


def test_status_has_nodes_with_patronis_roles_etcd_members_and_the_settings(site, user):
    healthy(site)
    status = site.status()
    kinds = {row["name"]: row["kind"] for row in status["stores"]}
    assert kinds == {"etcd1": "etcd", "etcd2": "etcd", "etcd3": "etcd", "pg1": "postgres", "pg2": "postgres"}
    assert sorted(pg_roles(site).values()) == ["primary", "replica"]
    assert status["patroni"] == {"ttl": 20, "loop_wait": 2, "retry_timeout": 5}
    assert status["topology"]["pg_ha"] == "patroni"
    refused = clusters.deploy(site.state_dir, "promote", check=False)
    assert refused.returncode == 1 and "Patroni promotes" in refused.stderr
    assert post(user, site, "hello")


def test_postgres_killed_alone_is_restarted_in_place_by_patroni(site, user):
    leader = healthy(site)
    before = records(site)[leader]
    postmaster = patroninodes.postmaster(before)
    assert site.run("kill", leader, "--process", "postgres").stdout.strip() == f"{leader}'s postgres killed"
    assert running(before), "Patroni itself keeps running"
    wait_for(lambda: post(user, site, "after a restart in place"), timeout=60, what="a write after the restart")
    assert patroninodes.postmaster(before)["pid"] != postmaster["pid"]
    assert pg_roles(site)[leader] == "primary", "the same node leads: no failover"


def test_primary_node_killed_the_instances_follow_and_no_acknowledged_write_is_lost(site, user):
    old = healthy(site)
    acknowledged = [client_id for n in range(10) if (client_id := post(user, site, f"before {n}"))]
    assert len(acknowledged) == 10
    killed = time.monotonic()
    site.run("kill", "pg:primary")
    failed = 0
    while True:  # every write is tried: those acknowledged during the failover must be kept too
        client_id = post(user, site, "during")
        if client_id:
            acknowledged.append(client_id)
            break
        failed += 1
        assert time.monotonic() - killed < FOLLOWED_WITHIN, f"no write succeeded within {FOLLOWED_WITHIN} s"
    followed = time.monotonic() - killed
    print(f"writes succeeded again {followed:.1f} s after the primary's node was killed ({failed} failed)")
    acknowledged += [client_id for n in range(5) if (client_id := post(user, site, f"after {n}"))]

    new = next(name for name, role in pg_roles(site).items() if role == "primary")
    assert new != old
    assert set(acknowledged) <= stored_client_ids(records(site)[new]), "an acknowledged write was lost"
    assert user.get(f"{site.url}/api/me").status == 200, "the session (in the database) survived"


@pytest.mark.long
def test_the_old_primary_rejoins_as_a_replica_and_streams(site, user):
    down = [name for name, role in pg_roles(site).items() if role == "down"]
    assert len(down) == 1, pg_roles(site)
    old = down[0]
    primary = next(name for name, role in pg_roles(site).items() if role == "primary")
    site.run("start", old)
    wait_for(lambda: pg_roles(site)[old] == "replica", timeout=120, what=f"{old} back as a replica")
    assert pg_roles(site)[primary] == "primary"
    written = post(user, site, "after the rejoin")
    assert written
    wait_for(lambda: written in stored_client_ids(records(site)[old]), timeout=60,
             what=f"{old} streaming the new primary's writes")


def test_down_leaves_no_process_folder_or_etcd_member(site):
    nodes = {name: record for name, record in records(site).items() if record["kind"] == "postgres"}
    members = [record for record in records(site).values() if record["kind"] == "etcd"]
    postmasters = [process for record in nodes.values() if (process := patroninodes.postmaster(record))]
    assert postmasters
    site.run("down")
    assert not any(running(process) for process in [*nodes.values(), *postmasters, *members])
    assert not any(os.path.exists(record["folder"]) for record in nodes.values())
    assert not any(os.path.exists(member["data"]) for member in members)


@pytest.mark.long
@pytest.mark.timeout(400)
def test_a_primary_cut_off_from_etcd_demotes_itself_and_a_standby_takes_over(tmp_path):
    """The soft-state write right: pg1 cannot renew its key, so within loop_wait + retry_timeout it stops being
    primary (its users' writes refused from then on), and once the key expires another node is promoted."""
    state_dir = tmp_path / "cut"
    try:
        c = clusters.up(state_dir, "--instances", "2", "--sessions", "db", "--presence", "memory", "--db", "postgres",
                        "--pg-standbys", "2", "--pg-ha", "patroni", "--netns")
        leader = healthy(c, synchronous=False)
        others = [name for name in records(c) if name != leader]
        cut = time.monotonic()
        c.run("partition", leader, "--from", ",".join([*others, "app2"]))
        wait_for(lambda: pg_roles(c)[leader] != "primary", timeout=SETTINGS.loop_wait + SETTINGS.retry_timeout + 20,
                 what=f"{leader} demoting itself")
        demoted = time.monotonic() - cut
        wait_for(lambda: any(pg_roles(c).get(name) == "primary" for name in others), timeout=FOLLOWED_WITHIN + 15,
                 what="a standby promoted on the majority side")
        print(f"{leader} demoted itself {demoted:.1f} s after the cut")
    finally:
        clusters.deploy(state_dir, "down", check=False)
