"""Presence is soft state: it lasts only while heartbeats keep coming."""

import pytest
from django.conf import settings

from chat.presence.base import CHANGE_LOG_SIZE
from chat.presence.memory import MemoryPresence
from chat.presence.redis import RedisPresence

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
    assert expired.changes == [["-", "ada"], ["-", "cy"]]


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
