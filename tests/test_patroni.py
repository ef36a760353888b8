"""PostgreSQL under Patroni (deploy/kinds/patroninodes.py): real etcd (one member, which takes only its cluster's
certificate), real Patroni and PostgreSQL.

Two nodes, a primary and one synchronous standby ("FIRST 1"). A client
holds one libpq conninfo naming both nodes with
target_session_attrs=read-write, as the site's instances will: it reaches
whichever node is the primary, before and after a failover.

The tests share one cluster, in this order: bootstrap, a new node's failed
starts, PostgreSQL killed alone, the primary's node killed. Most of their time is the failover's
wait for the dead leader's key to expire (ttl).
"""

import glob
import os
import secrets
import shutil
import socket
import tempfile
import time

import psycopg
import pytest

from deploy.cluster import DeployError, free_port, run_all, running, wait_for
from deploy.kinds import patroninodes as patroni
from deploy.kinds.pgserver import postgres_folder
from tests.servers import EtcdCluster

# A failover takes at most ttl (the dead leader's key expires) + loop_wait (a standby's next look) + the
# promotion; the margin is for this busy machine.
FAILOVER_DEADLINE = patroni.LAB.ttl + patroni.LAB.loop_wait + 15

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Patroni runs PostgreSQL as `postgres`: root only")


@pytest.fixture(scope="module")
def cluster():
    state_dir = tempfile.mkdtemp(prefix="lab-test-patroni-")
    members = EtcdCluster(1)
    nodes = []
    try:
        nodes = patroni.start_cluster(patroni.plan([(free_port(), free_port()) for _ in range(2)], members.members),
                                      state_dir, sync=1)
        yield nodes
    finally:
        run_all([lambda: patroni.remove(nodes), members.stop, lambda: shutil.rmtree(state_dir, ignore_errors=True)])
    assert not any(os.path.exists(node["folder"]) for node in nodes)
    assert not any(running(node) for node in nodes)


def healthy(nodes):
    """Wait for one primary and every other node its synchronous standby; return the primary's node.

    A replica that runs but is not yet named synchronous in etcd (just after
    the primary restarted) is one Patroni rightly does not promote.
    """
    def synchronous():
        name = patroni.primary(nodes)
        wanted = {n["name"]: "leader" if n["name"] == name else "sync_standby" for n in nodes}
        return name and patroni.members(node_named(nodes, name)) == wanted and name

    return node_named(nodes, wait_for(synchronous, timeout=120, what="one primary and a synchronous standby"))


def node_named(nodes, name):
    return next(n for n in nodes if n["name"] == name)


def write(nodes, value):
    """Write value through the read-write conninfo; return the port of the server that took it."""
    with psycopg.connect(patroni.conninfo(nodes), autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS notes (value text)")
        connection.execute("INSERT INTO notes VALUES (%s)", (value,))
        return connection.execute("SELECT current_setting('port')::int").fetchone()[0]


def notes(node):
    """The notes node holds; none while its PostgreSQL does not answer (Patroni may restart it as it rejoins)."""
    try:
        with psycopg.connect(patroni.conninfo([node]).replace("read-write", "any")) as connection:
            return {row[0] for row in connection.execute("SELECT value FROM notes")}
    except psycopg.OperationalError:
        return set()



def test_a_synchronous_cluster_is_handed_over_with_its_standby_named_synchronous(cluster):
    """Right after start_cluster, no wait: until Patroni names the standby, the primary commits asynchronously.
    (First in the module, so that no failover has happened yet.)"""
    assert patroni.named_synchronous(cluster) == 1

def test_sync_settings_and_timings_within_patronis_limits():
    assert patroni.sync_count("off") is None
    assert patroni.sync_count("FIRST 2") == 2
    with pytest.raises(DeployError, match="Patroni 3.0.2 does not have"):
        patroni.sync_count("ANY 1")
    with pytest.raises(DeployError, match="loop_wait \\+ 2 \\* retry_timeout <= ttl"):
        patroni.Settings(ttl=20, loop_wait=5, retry_timeout=8)
    with pytest.raises(DeployError, match="ttl >= 20"):
        patroni.Settings(ttl=10, loop_wait=2, retry_timeout=4)


def test_bootstrap_one_primary_one_replica_and_writes_reach_the_primary(cluster):
    first = healthy(cluster)
    assert sorted(patroni.role(n) for n in cluster) == ["primary", "replica"]
    assert patroni.role({**first, "api_port": free_port()}) == "down"
    assert patroni.settings(first) == {"ttl": 20, "loop_wait": 2, "retry_timeout": 5}
    assert write(cluster, "bootstrap") == first["port"]


@pytest.fixture
def doomed(cluster):
    """A new node of the cluster whose Patroni exits at start: its REST API's port is bound, not listening."""
    with socket.socket() as taken:
        taken.bind((cluster[0]["host"], 0))
        yield {**cluster[0], "name": f"pgfailed{secrets.token_hex(4)}", "port": free_port(),
               "api_port": taken.getsockname()[1], "folder": None}


def test_a_failed_start_leaves_no_folder(doomed, tmp_path):
    pattern = f"/var/tmp/stateful-lab-{doomed['name']}-*"
    try:
        with pytest.raises(DeployError, match="exited at start"):
            patroni.start_node(doomed, tmp_path, sync=1)
        assert glob.glob(pattern) == [], "the new node's folder holds every password and etcd's client key"
    finally:
        run_all([lambda folder=folder: shutil.rmtree(folder) for folder in glob.glob(pattern)])


def test_a_link_planted_in_a_nodes_folder_is_not_followed(doomed, tmp_path):
    """The folder is `postgres`'s: a link it plants there must not make root write, or hand it, another file."""
    target = tmp_path / "root's"
    target.write_text("root's own")
    folder = postgres_folder(doomed["name"])
    try:
        for name in ("patroni.json", "etcd-key.pem"):
            (folder / name).symlink_to(target)
        with pytest.raises(DeployError) as refused:
            patroni.start_node({**doomed, "folder": str(folder)}, tmp_path, sync=1)
        assert (target.read_text(), target.stat().st_uid) == ("root's own", 0)
        assert "symbolic link" in str(refused.value)
    finally:
        shutil.rmtree(folder)


def try_write(nodes, value):
    try:
        return write(nodes, value)
    except psycopg.OperationalError:
        return None


def test_postgres_killed_alone_is_restarted_in_place(cluster):
    leader = healthy(cluster)
    old_pid = patroni.postmaster(leader)["pid"]
    patroni.kill_postgres_only(leader)
    assert running(leader), "Patroni itself keeps running"
    wait_for(lambda: try_write(cluster, "after restart"), timeout=60, what="a write after PostgreSQL's restart")
    assert patroni.postmaster(leader)["pid"] != old_pid
    assert patroni.primary(cluster) == leader["name"], "the leader did not change"


def test_primary_node_killed_fails_over_then_rejoins_as_replica(cluster, tmp_path):
    old = healthy(cluster)
    standby = next(n for n in cluster if n is not old)
    write(cluster, "before")
    killed = time.monotonic()
    patroni.kill_node(old)
    wait_for(lambda: patroni.role(standby) == "primary", timeout=FAILOVER_DEADLINE,
             what=f"{standby['name']} promoted by Patroni")
    promoted = time.monotonic() - killed
    # Patroni names it primary a moment before its PostgreSQL takes writes on a busy machine.
    served = wait_for(lambda: try_write(cluster, "after"), timeout=60, what="a write after the promotion")
    assert served == standby["port"]
    print(f"promoted {promoted:.1f} s after the primary's node was killed")

    old.update(patroni.start_node(old, tmp_path, sync=1))
    wait_for(lambda: patroni.role(old) == "replica", timeout=120, what=f"{old['name']} back as a replica")
    assert patroni.primary(cluster) == standby["name"]
    wait_for(lambda: notes(old) >= {"before", "after"}, timeout=60, what="the old primary streaming the new one's WAL")
