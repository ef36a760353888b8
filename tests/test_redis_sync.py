"""REDIS_SYNC against a real primary and its replica: what it promises, and to whom a shortfall answers.

The failover here is done by hand (the primary killed, the replica told
REPLICAOF NO ONE, the site pointed at it), as Sentinel would do it, so the
replica holds exactly what it had confirmed when the primary died.
"""

import signal
import types
from functools import partial

import pytest
import redis
from django.core.cache import caches
from django.test import Client

from deploy.cluster import free_port, new_password, run_all, server_settings, signal_group, stop, wait_for
from deploy.kinds import rediscluster
from deploy.kinds.redis import start_redis
from labcore.config import store_settings
from labcore.registry import ConfigError
from labcore.sessions.redis import confirmed
from labcore.stores import StoreUnavailable, redis_client, store_errors
from tests.conftest import use_stores
from tests.servers import Server

PASSWORD = "correct horse battery"
# A primary refuses writes once its replica is this many seconds behind (min-replicas-max-lag), as deploy's do.
MAX_LAG = 1


def node(server):
    return redis.Redis(port=server.port, password=server.password, socket_timeout=5)


@pytest.fixture
def pair(settings, tmp_path, db, django_user_model, memcached_service):
    """A primary with one replica; `configure(store)` points the site at the primary with REDIS_SYNC=1."""
    # No delay before the full copy (Redis waits 5 s for more replicas by default).
    primary = Server("redis", partial(start_redis, args=["--repl-diskless-sync", "yes",
                                                           "--repl-diskless-sync-delay", "0"]))
    replica = Server("redis", partial(start_redis, args=["--replicaof", "127.0.0.1", str(primary.port),
                                                           "--repl-ping-replica-period", "1"]))
    replica.password = primary.password
    primary.start()
    try:
        replica.start()
        with node(primary) as client:
            wait_for(lambda: confirmed_probe(client), timeout=30, what="the replica to confirm writes")
        # A busy machine's margin: WAIT gets STORE_TIMEOUT / 2, 1 s, where a replica confirms in milliseconds.
        settings.STORE_TIMEOUT = 2
        for name in ("ada", "bob"):
            django_user_model.objects.create_user(name, password=PASSWORD)

        def point_at(server, store, empty=True):
            use_stores(settings, session_store=store, presence_store="memory", redis=server,
                       memcached=memcached_service, tmp_path=tmp_path, empty=empty, redis_sync=1)

        def configure(store):
            point_at(primary, store)
            clients = []
            for name in ("ada", "bob"):
                client = Client()
                assert client.post("/accounts/login/", {"username": name, "password": PASSWORD}).status_code == 302
                clients.append(client)
            return clients

        def cut_link():
            """The replica stops receiving anything (as in a partition): it can no longer log in to the primary."""
            with node(replica) as client:
                client.config_set("masterauth", "not the password")
            with node(primary) as client:
                client.client_kill_filter(_type="replica")
            with node(replica) as client:
                wait_for(lambda: client.info("replication")["master_link_status"] == "down", timeout=30,
                         what="the replication link to be cut")

        def fail_over():
            """The primary dies; the replica, with what it had, becomes the primary the site uses."""
            primary.stop()
            with node(replica) as client:
                client.replicaof("NO", "ONE")
            point_at(replica, settings.SESSION_STORE, empty=False)

        configure.primary, configure.replica = primary, replica
        configure.cut_link, configure.fail_over = cut_link, fail_over
        yield configure
    finally:
        try:
            replica.stop()
        finally:
            primary.stop()


def confirmed_probe(client):
    """A write on the primary that its replica confirms (WAIT on the same connection)."""
    return client.pipeline(transaction=False).set("probe", 1).wait(1, 100).execute()[1] == 1


def assert_refused_by_replication(response):
    """A 503 naming Redis that says how many replicas confirmed, of how many, and no address."""
    assert response.status_code == 503
    assert response.json()["store"] == "redis"
    assert "0 of 1 replicas confirmed" in response.json()["error"], response.json()
    assert "127.0.0.1" not in response.json()["error"]


@pytest.mark.parametrize("store", ["redis", "cached_db"])
def test_a_logout_no_replica_confirmed_is_refused_so_a_failover_cannot_undo_it(pair, store):
    ada, _ = pair(store)
    cookie = ada.cookies["sessionid"].value
    pair.cut_link()
    logout = ada.post("/accounts/logout/")
    pair.fail_over()
    # The cookie as the browser (or whoever copied it) kept it.
    ada.cookies["sessionid"] = cookie
    me = ada.get("/api/me")
    # Acknowledged, the logout would have to hold on the new primary; it was not acknowledged, and the
    # user is still logged in, as the 503 told them.
    assert (logout.status_code, me.status_code) != (302, 200), "the failover undid an acknowledged logout"
    assert logout.status_code == 503 and "needs <strong>redis</strong>" in logout.content.decode()
    assert me.json()["username"] == "ada"


def test_a_shortfall_fails_its_own_write_and_leaves_the_others_reading(pair, settings):
    ada, bob = pair("redis")
    with node(pair.primary) as client:  # as deploy's nodes with --redis-sync
        client.config_set("min-replicas-to-write", 1)
        client.config_set("min-replicas-max-lag", MAX_LAG)
    pair.replica.pause()
    try:
        # Right after the replica froze, WAIT gives up; once the primary counts it gone it refuses the write.
        assert_refused_by_replication(ada.post("/api/session-counter", {"counter": 1},
                                               content_type="application/json"))
        assert bob.get("/api/me").status_code == 200
        with node(pair.primary) as client:
            wait_for(lambda: client.info("replication")["min_slaves_good_slaves"] == 0, timeout=MAX_LAG + 30,
                     what="the primary to count its replica gone")
        assert_refused_by_replication(ada.post("/api/session-counter", {"counter": 2},
                                               content_type="application/json"))
        assert bob.get("/api/me").status_code == 200
        # Any other write (a heartbeat, a throttle counter) is refused too, and leaves the breaker closed.
        with pytest.raises(StoreUnavailable, match="NOREPLICAS"), store_errors("redis"):
            redis_client().set("heartbeat", 1)
        assert bob.get("/api/me").status_code == 200
    finally:
        pair.replica.resume()
    written = lambda: ada.post("/api/session-counter", {"counter": 3}, content_type="application/json")  # noqa: E731
    wait_for(lambda: written().status_code == 200, timeout=MAX_LAG + 30, what="the replica to confirm writes again")


@pytest.fixture
def shard(settings, tmp_path, db, django_user_model, memcached_service):
    """A one-shard Redis Cluster, a primary and its replica; the site's sessions on it with REDIS_SYNC=1."""
    place = types.SimpleNamespace(path=tmp_path / "cluster", durable=False, topology={})
    password = new_password()
    nodes = []
    try:
        for name in ("redis1", "redis2"):
            nodes.append(rediscluster.start_node(place, name, free_port(), free_port(), password=password))
        rediscluster.form(nodes, shards=1)
        settings.STORE_TIMEOUT = 2  # WAIT gets 1 s: a busy machine's margin
        use_stores(settings, session_store="redis", presence_store="memory",
                   redis=types.SimpleNamespace(url=server_settings("redis", nodes[0])["REDIS_URL"]),
                   memcached=memcached_service, tmp_path=tmp_path, empty=False, redis_sync=1,
                   redis_cluster_nodes=(("127.0.0.1", nodes[0]["port"]),))
        django_user_model.objects.create_user("ada", password=PASSWORD)
        yield nodes
    finally:
        run_all([partial(stop, record) for record in nodes])


def test_in_redis_cluster_a_logout_its_shards_replica_did_not_confirm_is_refused(shard):
    ada = Client()
    assert ada.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
    signal_group(shard[1]["pid"], signal.SIGSTOP)
    try:
        assert_refused_by_replication(ada.post("/api/session-counter", {"counter": 1},
                                               content_type="application/json"))
        # Not acknowledged: the primary may have deleted the key, but a failover to the replica would not
        # know it, so the user is not told the logout happened.
        logout = ada.post("/accounts/logout/")
        assert logout.status_code == 503 and "0 of 1 replicas confirmed" in logout.content.decode()
    finally:
        signal_group(shard[1]["pid"], signal.SIGCONT)
    logged_in = lambda: ada.post("/accounts/login/", {"username": "ada", "password": PASSWORD})  # noqa: E731
    wait_for(lambda: logged_in().status_code == 302, timeout=30, what="the replica to confirm a login again")
    assert ada.post("/accounts/logout/").status_code == 302
    assert ada.get("/api/me").status_code == 401


def test_in_redis_cluster_a_confirmed_write_follows_its_slot_to_a_new_primary(shard):
    ada = Client()
    assert ada.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
    old, new = (redis.Redis(port=record["port"], password=record["password"]) for record in shard)
    new.execute_command("CLUSTER", "FAILOVER")  # coordinated: the replica takes over with every write
    wait_for(lambda: new.info("replication")["role"] == "master" and
             old.info("replication").get("master_link_status") == "up", timeout=60,
             what="the replica to take the slot over, and the old primary to follow it")
    # The site's slot map still names the old primary, which answers MOVED: a write with no read before it.
    assert confirmed(caches["sessions"], "set", "probe", "1")
    written = ada.post("/api/session-counter", {"counter": 7}, content_type="application/json")
    assert written.status_code == 200, written.content[:300]
    assert ada.get("/api/session-counter").json()["counter"] == 7


@pytest.mark.parametrize("timeouts", [(0.5, 0.5), (0.5, 0)])
def test_a_sync_the_client_cannot_keep_is_refused_at_start(settings, tmp_path, timeouts):
    timeout, sync_timeout = timeouts
    with pytest.raises(ConfigError, match="REDIS_SYNC"):
        stores_for(tmp_path, timeout=timeout, redis_sync=1, redis_sync_timeout=sync_timeout)
    assert stores_for(tmp_path, timeout=0.5, redis_sync=1)["REDIS_TARGET"].sync_timeout == 0.25


def stores_for(tmp_path, **options):
    return store_settings(session_store="redis", presence_store="memory", redis_url="redis://127.0.0.1/0",
                          memcached_url="memcached://127.0.0.1", state_dir=tmp_path, **options)
