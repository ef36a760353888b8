"""Presence is soft state: it lasts only while heartbeats keep coming."""

import pytest
from django.conf import settings

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


def test_a_heartbeat_lists_the_user(store):
    assert store.heartbeat("lobby", "ada") == ["ada"]
    assert store.heartbeat("lobby", "bob") == ["ada", "bob"]
    assert store.online("lobby") == ["ada", "bob"]
    assert store.online("elsewhere") == []


def test_a_user_drops_out_after_the_ttl_without_heartbeats(store):
    store.heartbeat("lobby", "ada")
    store.clock_.now += TTL - 1
    store.heartbeat("lobby", "bob")
    assert store.online("lobby") == ["ada", "bob"]
    store.clock_.now += 2
    assert store.online("lobby") == ["bob"]
    assert store.heartbeat("lobby", "bob") == ["bob"]


def test_a_heartbeat_within_the_ttl_keeps_the_user(store):
    for _ in range(5):
        store.heartbeat("lobby", "ada")
        store.clock_.now += TTL - 1
    assert store.online("lobby") == ["ada"]


def test_leave_and_leave_everywhere(store):
    for room in ("lobby", "games"):
        store.heartbeat(room, "ada")
        store.heartbeat(room, "bob")
    store.leave("lobby", "ada")
    assert store.online("lobby") == ["bob"]
    store.leave_everywhere("bob")
    assert (store.online("lobby"), store.online("games")) == ([], ["ada"])


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
