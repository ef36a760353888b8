"""Idle logout: a login is soft state that lapses without requests, on every store."""

import pytest
from django.conf import settings
from django.test import Client

import accounts.middleware

PASSWORD = "correct horse battery"
IDLE = 100


class FakeTime:
    def __init__(self, now):
        self.now = now

    def time(self):
        return self.now

    def monotonic(self):
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


# A signed cookie carries the whole session: logging out forgets nothing on the
# server, so a copy made before the logout is a login of its own.


def copy_then_log_out(client):
    log_in(client)
    copy = Client()
    copy.cookies[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/api/me").status_code == 401
    return copy


@pytest.mark.parametrize("session_store", ["signed_cookies"], indirect=True)
def test_a_copied_signed_cookie_in_use_lasts_until_the_absolute_limit(session_store, client, user, clock, settings):
    settings.SESSION_COOKIE_AGE = 10 * IDLE
    copy = copy_then_log_out(client)
    # Each idle refresh hands the copy a freshly signed cookie, so it never
    # runs out of idle time; only the age since the login ends it.
    for step in range(1, 12):
        clock.now += IDLE - 1
        expected = 200 if step * (IDLE - 1) <= settings.SESSION_COOKIE_AGE else 401
        assert copy.get("/api/me").status_code == expected, step


@pytest.mark.parametrize("session_store", ["signed_cookies"], indirect=True)
def test_a_copied_signed_cookie_left_unused_lapses_and_a_new_password_ends_it(session_store, client, user, clock):
    idle_copy = copy_then_log_out(client)
    clock.now += IDLE + 1
    assert idle_copy.get("/api/me").status_code == 401

    copy = copy_then_log_out(client)
    assert copy.get("/api/me").status_code == 200
    user.set_password("a new one entirely")
    user.save()
    assert copy.get("/api/me").status_code == 401
