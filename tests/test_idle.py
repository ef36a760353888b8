"""Idle logout: a login is soft state that lapses without requests, on every store."""

import pytest
from django.conf import settings

import accounts.middleware

PASSWORD = "correct horse battery"
IDLE = 100


class FakeTime:
    def __init__(self, now):
        self.now = now

    def time(self):
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.IDLE_TIMEOUT = IDLE
    fake = FakeTime(1_800_000_000.0)
    monkeypatch.setattr(accounts.middleware, "time", fake)
    return fake


def log_in(client):
    assert client.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302


def test_an_idle_login_is_logged_out(session_store, client, user, clock):
    log_in(client)
    assert client.get("/api/me").status_code == 200
    clock.now += IDLE + 1
    response = client.get("/api/me")
    assert response.status_code == 401
    assert f"{IDLE} s without a request" in response.json()["error"]
    assert client.get("/api/me").status_code == 401


def test_an_active_login_still_ends_at_the_absolute_limit(session_store, client, user, clock, settings):
    settings.SESSION_COOKIE_AGE = 10 * IDLE
    log_in(client)
    for step in range(1, 12):
        clock.now += IDLE - 1  # never idle for long
        expected = 200 if step * (IDLE - 1) <= settings.SESSION_COOKIE_AGE else 401
        assert client.get("/api/me").status_code == expected, step


def test_an_active_login_stays_without_a_write_per_request(session_store, client, user, clock):
    log_in(client)
    writes = 0
    for _ in range(50):
        clock.now += 3  # 150 s in all: longer than the idle timeout
        response = client.get("/api/me")
        assert response.status_code == 200
        writes += settings.SESSION_COOKIE_NAME in response.cookies
    # A write once per IDLE / 10 = 10 s, so about one request in four.
    assert 10 <= writes <= 17
