"""The store commands each request of the poll mix sends, pinned per session store.

The poll mix is what an open chat page sends all the time: an empty poll of
a room's messages, a presence heartbeat, and /api/me. Each request's
commands are counted by the servers themselves (labcore/roundtrips.py), in
the steady state: the same request once before, so connections are open
and scripts loaded. A change that adds a round trip to any of them fails
here, with the whole breakdown; a change that removes one updates the table
(and docs/benchmarks/bench.md, "Round trips per request").
"""

import time
import types
from functools import partial

import pytest
from django.conf import settings

import accounts.middleware
from deploy.cluster import server_settings
from labcore import registry
from labcore.roundtrips import count_commands, per_store
from labcore.stores import redis_client
from tests.conftest import use_stores
from tests.servers import one_node_redis_cluster

ROOM = "lobby"
REQUESTS = {
    "poll": lambda client, after: client.get(f"/api/rooms/{ROOM}/messages?after={after}"),
    "heartbeat": lambda client, after: client.post(f"/api/rooms/{ROOM}/presence"),
    "me": lambda client, after: client.get("/api/me"),
}

# Commands per request, by store: {store: {request: {server: commands}}}. The
# poll's database statement is the room's high-water mark (chat/services.py).
# "me, stamp due": /api/me when the login's activity stamp is due, the one
# request in IDLE_TIMEOUT / 10 that writes the session (accounts/middleware.py).
# A database write's transaction shows as SAVEPOINT and RELEASE here, inside
# the test's own transaction (BEGIN and COMMIT outside one).
R, D, M = "redis", "database", "memcached"
EXPECTED = {
    "memory": {"poll": {D: 1}, "heartbeat": {}, "me": {}, "me, stamp due": {}},
    "file": {"poll": {D: 1}, "heartbeat": {R: 1}, "me": {}, "me, stamp due": {}},
    "db": {"poll": {D: 2}, "heartbeat": {D: 1, R: 1}, "me": {D: 1}, "me, stamp due": {D: 2}},
    "cached_db": {"poll": {R: 1, D: 1}, "heartbeat": {R: 2}, "me": {R: 1}, "me, stamp due": {R: 3, D: 1}},
    "redis": {"poll": {R: 1, D: 1}, "heartbeat": {R: 2}, "me": {R: 1}, "me, stamp due": {R: 2}},
    "memcached": {"poll": {M: 1, D: 1}, "heartbeat": {M: 1, R: 1}, "me": {M: 1}, "me, stamp due": {M: 2}},
    "signed_cookies": {"poll": {D: 1}, "heartbeat": {R: 1}, "me": {}, "me, stamp due": {}},
    # Django's own engines on stock caches, for comparison (labcore/registry.py).
    "stock_cache_redis": {"poll": {R: 1, D: 1}, "heartbeat": {R: 2}, "me": {R: 1}, "me, stamp due": {R: 3}},
    "stock_cache_django_redis": {"poll": {R: 1, D: 1}, "heartbeat": {R: 2}, "me": {R: 1},
                                 "me, stamp due": {R: 3}},
    "stock_cached_db": {"poll": {R: 1, D: 1}, "heartbeat": {R: 2}, "me": {R: 1}, "me, stamp due": {R: 2, D: 3}},
    # Redis Cluster (one node holding every slot: the commands are the same on any number of shards).
    "redis_cluster": {"poll": {R: 1, D: 1}, "heartbeat": {R: 3}, "me": {R: 1}, "me, stamp due": {R: 2}},
}


@pytest.fixture
def steady(settings):
    # The user stays cached in the process between the two requests however busy the machine
    # (accounts/middleware.py), so a count never depends on the time between them.
    settings.USER_CACHE_SECONDS = 3600


def commands_of(client, name, after):
    """The commands the request sends the second time it is made, by server and command."""
    send = REQUESTS[name]
    assert send(client, after).status_code == 200
    return count_request(lambda: send(client, after))


def count_request(send):
    """The commands send() sends the site's stores, which must answer it with a 200."""
    memcached = settings.CACHES["sessions"]["LOCATION"] if settings.SESSION_STORE == "memcached" else None

    def request():
        assert send().status_code == 200

    return count_commands(request, redis_url=settings.REDIS_URL, memcached_location=memcached)


@pytest.fixture(scope="module")
def redis_cluster():
    with one_node_redis_cluster() as node:
        yield node


@pytest.fixture
def clustered(settings, redis_cluster, memcached_service, tmp_path, db):
    """Sessions and presence in Redis Cluster, as deploy's --redis cluster gives them."""
    use_stores(settings, session_store="redis", presence_store="redis",
               redis=types.SimpleNamespace(url=server_settings("redis", redis_cluster)["REDIS_URL"]),
               memcached=memcached_service, tmp_path=tmp_path,
               redis_cluster_nodes=[("127.0.0.1", redis_cluster["port"])])
    return "redis_cluster"


@pytest.fixture(params=registry.COMPARISON_SESSION_STORES)
def stock_engine(request, settings, redis_service, memcached_service, redis_db, tmp_path, db):
    use_stores(settings, session_store=request.param, presence_store="redis", redis=redis_service,
               memcached=memcached_service, tmp_path=tmp_path)
    return request.param


def test_the_poll_mix_sends_the_pinned_store_commands(session_store, steady, logged_in):
    check_pinned(session_store, logged_in)


def test_djangos_stock_engines_send_the_pinned_store_commands(stock_engine, steady, logged_in):
    check_pinned(stock_engine, logged_in)


def test_the_poll_mix_sends_the_pinned_store_commands_to_redis_cluster(clustered, steady, logged_in, user):
    check_pinned(clustered, logged_in)
    # The heartbeat's one command on the user's shard still lists the room, for a logout to leave it.
    node = redis_client()
    assert node.smembers(f"presence:user:{user.username}") == {ROOM.encode()}
    assert 0 < node.ttl(f"presence:user:{user.username}") <= settings.PRESENCE_TTL + 1


class LaterTime:
    """The idle-logout middleware's clock, `ahead` seconds ahead of the real one (the user cache's stays real)."""

    def __init__(self, ahead):
        self.ahead = ahead

    def time(self):
        return time.time() + self.ahead

    def monotonic(self):
        return time.monotonic()


def stamp_commands(client):
    """What /api/me sends when the login's activity stamp is due: the one request in IDLE_TIMEOUT / 10 that writes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts.middleware, "time", LaterTime(settings.IDLE_TIMEOUT / 10 + 1))
        return count_request(lambda: REQUESTS["me"](client, 0))


def check_pinned(store, client):
    after = 0
    found = {name: commands_of(client, name, after) for name in REQUESTS}
    found["me, stamp due"] = stamp_commands(client)
    totals = {name: per_store(counts) for name, counts in found.items()}
    breakdown = "\n".join(f"  {name}: {dict(sorted(counts.items()))}" for name, counts in found.items())
    assert store in EXPECTED, f"{store} has no pinned counts: add its row to EXPECTED. It sends:\n{breakdown}"
    assert totals == EXPECTED[store], f"{store} sends other commands than pinned:\n{breakdown}"


def test_the_floor_sends_the_same_store_commands_as_the_poll_mix(session_store, settings, client):
    settings.BENCH_VIEWS = True
    found = {}
    for name in REQUESTS:
        send = partial(client.get, f"/bench/floor/{name}")
        send()  # the first writes the floor's session
        found[name] = count_request(send)
    breakdown = "\n".join(f"  {name}: {dict(sorted(counts.items()))}" for name, counts in found.items())
    pinned = {name: EXPECTED[session_store][name] for name in REQUESTS}
    assert {name: per_store(counts) for name, counts in found.items()} == pinned, (
        f"{session_store}'s floor sends other commands than its poll mix:\n{breakdown}")


def test_the_floor_is_not_served_without_bench_views(settings, client, db):
    settings.BENCH_VIEWS = False
    assert client.get("/bench/floor/poll").status_code == 404
