"""Sign-up, login, /api/me and logout, on every session store."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

PASSWORD = "correct horse battery"


def sign_up(client, username):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_signup_logs_in_and_me_names_the_stores(session_store, client):
    response = sign_up(client, "grace")
    assert response.status_code == 302
    me = client.get("/api/me")
    assert me.status_code == 200
    assert me.json() == {
        "username": "grace",
        "instance": settings.INSTANCE_NAME,
        "session_store": session_store,
        "presence_store": "memory" if session_store == "memory" else "redis",
        "auth": "session",
    }


def test_signup_rejects_mismatched_passwords(session_store, client):
    response = client.post(
        "/accounts/signup/", {"username": "grace", "password1": PASSWORD, "password2": "other"}
    )
    assert response.status_code == 200
    assert b"didn" in response.content  # "The two password fields didn't match."
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    ("password", "told"),
    [
        ("a", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("9081726354", "This password is entirely numeric."),
        ("grace-hopper", "The password is too similar to the username."),
    ],
)
def test_signup_refuses_weak_passwords_and_says_why(redis_stores, client, password, told):
    response = client.post(
        "/accounts/signup/", {"username": "grace-hopper", "password1": password, "password2": password}
    )
    assert response.status_code == 200
    assert told in response.content.decode()
    assert not get_user_model().objects.filter(username="grace-hopper").exists()


def test_login_form_and_wrong_password(session_store, client, user):
    wrong = client.post("/accounts/login/", {"username": "ada", "password": "nope"})
    assert wrong.status_code == 200
    assert client.get("/api/me").status_code == 401
    right = client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert right.status_code == 302
    assert client.get("/api/me").json()["username"] == "ada"


def test_session_cookie_is_httponly_and_samesite(session_store, client, user):
    client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_logout_ends_the_session(session_store, client, user):
    client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    old_cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/api/me").status_code == 401

    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old_cookie
    if session_store == "signed_cookies":
        # The state is in the cookie itself: nothing on the server can
        # forget it, so a copy of the old cookie still logs in.
        assert replay.get("/api/me").status_code == 200
    else:
        assert replay.get("/api/me").status_code == 401


def test_api_never_redirects_when_logged_out(session_store, client):
    for path in ("/api/me", "/api/rooms/lobby/messages", "/api/rooms/lobby/presence"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "error" in response.json()


def test_pages_redirect_to_login_when_logged_out(session_store, client):
    response = client.get("/rooms/lobby/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", ["/", "/rooms/lobby/"])
def test_pages_show_the_status_bar(session_store, client, user, path):
    client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    page = client.get(path).content.decode()
    assert settings.INSTANCE_NAME in page
    assert f"sessions: <strong>{session_store}</strong>" in page
    assert "logged in as <strong>ada</strong>" in page


def test_every_response_names_the_instance(session_store, client):
    for path in ("/healthz", "/readyz", "/api/me", "/accounts/login/", "/no-such-page"):
        assert client.get(path)["X-Served-By"] == settings.INSTANCE_NAME, path


def test_readyz_checks_every_configured_store(session_store, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    expected = {
        "memory": ["database", "presence"],
        "file": ["database", "counters", "presence"],
        "db": ["database", "counters", "presence"],
        "cached_db": ["database", "counters", "presence"],
        "redis": ["database", "sessions", "counters", "presence"],
        "memcached": ["database", "sessions", "counters", "presence"],
        "signed_cookies": ["database", "counters", "presence"],
    }[session_store]
    assert response.json()["checked"] == expected


@pytest.mark.parametrize("cookie", ["\x00aaaaaaaaaa", "a" * 300, "../../../../etc/passwd", "ABCDEFGH12345678"])
def test_a_forged_session_cookie_is_just_no_session(session_store, client, cookie):
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    assert client.get("/api/me").status_code == 401
    assert client.get("/").status_code == 302


def test_memory_sessions_are_not_evicted_by_a_busy_process(settings, client, user):
    from labcore.sessions.cache import SessionStore

    assert settings.SESSION_STORE == "memory"
    client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    for _ in range(1000):
        SessionStore().create()
    assert client.get("/api/me").status_code == 200
