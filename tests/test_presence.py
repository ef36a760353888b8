"""Presence is soft state: it lasts only while heartbeats keep coming."""

import pytest
from django.conf import settings

from chat.presence.base import CHANGE_LOG_SIZE, ROOM_TTL_FACTOR
from chat.presence.memory import MemoryPresence
from chat.presence.redis import RedisPresence
from deploy.cluster import wait_for

TTL = 16


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_stores, redis_db):
    cls = {"memory": MemoryPresence, "redis": RedisPresence}[request.param]
    clock = Clock()
    store = cls(ttl=TTL, clock=clock)
    store.clock_ = clock
    return store


def beat(store, room, username):
    return store.heartbeat(room, username).online


def test_a_heartbeat_lists_the_user(store):
    assert beat(store, "lobby", "ada") == ["ada"]
    assert beat(store, "lobby", "bob") == ["ada", "bob"]
    assert store.online("lobby") == ["ada", "bob"]
    assert store.online("elsewhere") == []


def test_a_user_drops_out_after_the_ttl_without_heartbeats(store):
    beat(store, "lobby", "ada")
    store.clock_.now += TTL - 1
    beat(store, "lobby", "bob")
    assert store.online("lobby") == ["ada", "bob"]
    store.clock_.now += 2
    assert store.online("lobby") == ["bob"]
    assert beat(store, "lobby", "bob") == ["bob"]


def test_a_heartbeat_within_the_ttl_keeps_the_user(store):
    for _ in range(5):
        beat(store, "lobby", "ada")
        store.clock_.now += TTL - 1
    assert store.online("lobby") == ["ada"]


def test_leave_and_leave_everywhere(store):
    for room in ("lobby", "games"):
        beat(store, room, "ada")
        beat(store, room, "bob")
    store.leave("lobby", "ada")
    assert store.online("lobby") == ["bob"]
    store.leave_everywhere("bob")
    assert (store.online("lobby"), store.online("games")) == ([], ["ada"])


def test_a_client_with_a_version_gets_only_the_changes(store):
    first = store.heartbeat("lobby", "ada")
    assert first.online == ["ada"]
    same = store.heartbeat("lobby", "ada", first.version)
    assert (same.online, same.changes, same.version) == (None, [], first.version)
    store.heartbeat("lobby", "bob")
    store.heartbeat("lobby", "cy")
    store.leave("lobby", "bob")
    later = store.view("lobby", first.version)
    assert later.online is None
    assert later.changes == [["+", "bob"], ["+", "cy"], ["-", "bob"]]
    store.clock_.now += TTL + 1
    expired = store.view("lobby", later.version)
    if store.name == "redis":
        assert expired.changes == [["-", "ada"], ["-", "cy"]]
    else:
        # Memory forgets a room when it empties: the full list, which is empty.
        assert (expired.online, expired.changes) == ([], [])


@pytest.mark.parametrize("since", ["0000.3", "zz.1", "deadbeef.999999"])
def test_a_version_from_elsewhere_gets_the_full_list(store, since):
    store.heartbeat("lobby", "ada")
    assert store.view("lobby", since).online == ["ada"]


def test_a_client_far_behind_gets_the_full_list(store):
    old = store.heartbeat("lobby", "ada").version
    for n in range(CHANGE_LOG_SIZE + 5):
        store.heartbeat("lobby", f"user{n}")
    view = store.view("lobby", old)
    assert view.online is not None and len(view.online) == CHANGE_LOG_SIZE + 6


def test_a_version_from_before_the_room_was_forgotten_gets_the_full_list(store, redis_db):
    held = store.heartbeat("lobby", "ada")
    # ada stops. Redis drops the room's keys when they expire, unlogged;
    # memory drops the room when a read finds it empty.
    store.clock_.now += TTL + 1
    if store.name == "redis":
        redis_db.delete("presence:room:lobby", "presence:counter:lobby", "presence:log:lobby")
    assert store.online("lobby") == []
    # The room comes back and counts past the version the client holds.
    for _ in range(3):
        store.heartbeat("lobby", "bob")
        store.leave("lobby", "bob")
    store.heartbeat("lobby", "bob")
    # Changes here would never remove ada from that client's list.
    assert store.view("lobby", held.version).online == ["bob"]


def test_redis_room_keys_expire_after_the_room_falls_silent(redis_stores, redis_db):
    store = RedisPresence(ttl=0.5)  # the real clock: Redis expires keys in real time
    store.heartbeat("lobby", "ada")
    keys = ["presence:room:lobby", "presence:counter:lobby", "presence:log:lobby"]
    # Each key expires (a positive PTTL, never -1), within its bound; how much
    # of it is left depends on how busy the machine was since the heartbeat.
    for key in keys:
        assert 0 < redis_db.pttl(key) <= ROOM_TTL_FACTOR * store.ttl * 1000, key
    assert 0 < redis_db.pttl("presence:user:ada") <= (store.ttl + 1) * 1000
    wait_for(lambda: not any(redis_db.exists(key) for key in keys), timeout=ROOM_TTL_FACTOR * store.ttl + 10,
             what="the room's keys to expire")
    # A read holds nothing.
    assert store.online("lobby") == []
    assert not any(redis_db.exists(key) for key in keys)


def test_redis_room_keys_of_the_defaults_live_longer_than_presence(redis_stores, redis_db):
    store = RedisPresence(ttl=settings.PRESENCE_TTL)
    store.heartbeat("lobby", "ada")
    store.leave("lobby", "ada")
    assert settings.PRESENCE_TTL < redis_db.ttl("presence:counter:lobby") <= ROOM_TTL_FACTOR * settings.PRESENCE_TTL


def test_memory_holds_only_rooms_with_someone_in_them():
    clock = Clock()
    store = MemoryPresence(ttl=TTL, clock=clock)
    assert store.view("nowhere").online == []
    assert store.rooms_held() == []
    store.heartbeat("lobby", "ada")
    store.heartbeat("games", "ada")
    store.heartbeat("quiet", "bob")
    store.leave("lobby", "ada")
    assert store.rooms_held() == ["games", "quiet"]
    store.leave_everywhere("ada")
    assert store.rooms_held() == ["quiet"]
    # Nobody reads "quiet" again: the next sweep, a TTL later, drops it.
    clock.now += TTL + 1
    store.heartbeat("lobby", "cy")
    assert store.rooms_held() == ["lobby"]


def test_ttl_leaves_room_for_two_lost_heartbeats():
    assert settings.PRESENCE_TTL > 3 * settings.PRESENCE_HEARTBEAT_INTERVAL


def test_heartbeat_api_returns_the_online_list(redis_stores, logged_in):
    response = logged_in.post("/api/rooms/lobby/presence")
    assert response.status_code == 200
    body = response.json()
    assert body["online"] == ["ada"]
    assert body["store"] == "redis"
    assert body["ttl"] == settings.PRESENCE_TTL
    assert logged_in.get("/api/rooms/lobby/presence").json()["online"] == ["ada"]
    since = logged_in.post(f"/api/rooms/lobby/presence?since={body['version']}").json()
    assert (since["changes"], since["version"]) == ([], body["version"])
    assert "online" not in since


def test_a_bad_version_is_a_400(redis_stores, logged_in):
    response = logged_in.get("/api/rooms/lobby/presence?since=<script>")
    assert response.status_code == 400
    assert "'since'" in response.json()["error"]


def test_leaving_the_page_leaves_the_room(redis_stores, logged_in):
    logged_in.post("/api/rooms/lobby/presence")
    response = logged_in.delete("/api/rooms/lobby/presence")
    assert response.status_code == 200
    assert response.json()["online"] == []


def test_logout_leaves_every_room(redis_stores, logged_in, django_user_model, client_factory):
    other = client_factory("bob")
    for room in ("lobby", "games"):
        logged_in.post(f"/api/rooms/{room}/presence")
        other.post(f"/api/rooms/{room}/presence")
    logged_in.post("/accounts/logout/")
    assert other.get("/api/rooms/lobby/presence").json()["online"] == ["bob"]
    assert other.get("/api/rooms/games/presence").json()["online"] == ["bob"]
