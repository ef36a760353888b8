"""CSRF, bearer tokens and login throttling."""

import uuid

import pytest
from django.conf import settings
from django.test import Client

from chat.models import Message

PASSWORD = "correct horse battery"


def csrf_token_of(client, path="/accounts/login/"):
    client.get(path)
    return client.cookies[settings.CSRF_COOKIE_NAME].value


def message(text="hi"):
    return {"text": text, "client_id": str(uuid.uuid4())}


# CSRF


def test_login_form_needs_the_csrf_token(redis_stores, csrf_client, user):
    response = csrf_client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 403
    token = csrf_token_of(csrf_client)
    response = csrf_client.post(
        "/accounts/login/",
        {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


def test_session_api_posts_need_the_csrf_token(redis_stores, csrf_client, user):
    token = csrf_token_of(csrf_client)
    csrf_client.post(
        "/accounts/login/", {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    token = csrf_token_of(csrf_client, "/")

    forged = csrf_client.post("/api/rooms/lobby/messages", message(), content_type="application/json")
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["error"]
    assert Message.objects.count() == 0

    sent = csrf_client.post(
        "/api/rooms/lobby/messages", message(), content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert sent.status_code == 201


def test_logout_needs_post_and_csrf(redis_stores, csrf_client, user):
    token = csrf_token_of(csrf_client)
    csrf_client.post(
        "/accounts/login/", {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert csrf_client.get("/accounts/logout/").status_code == 405
    assert csrf_client.post("/accounts/logout/").status_code == 403
    assert csrf_client.get("/api/me").status_code == 200


# Bearer tokens


def get_token(client, username="ada", password=PASSWORD):
    return client.post("/api/token", {"username": username, "password": password}, content_type="application/json")


def test_token_works_without_any_session(redis_stores, user):
    issued = get_token(Client())
    assert issued.status_code == 200
    body = issued.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.API_TOKEN_MAX_AGE

    bearer = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {body['token']}"})
    me = bearer.get("/api/me")
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["auth"]) == ("ada", "token")
    assert settings.SESSION_COOKIE_NAME not in me.cookies
    # No cookie, so no CSRF to forge: a token-authenticated post needs no CSRF token.
    assert bearer.post("/api/rooms/lobby/messages", message(), content_type="application/json").status_code == 201


def test_token_accepts_a_form_post(redis_stores, user):
    response = Client().post("/api/token", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("Bearer not-a-token", "invalid or expired"),
        ("Basic YWRhOnB3", "'Bearer <token>'"),
        ("Bearer ", "'Bearer <token>'"),
    ],
)
def test_bad_authorization_headers(redis_stores, user, header, named):
    response = Client(headers={"Authorization": header}).get("/api/me")
    assert response.status_code == 401
    assert named in response.json()["error"]


def test_expired_token_is_refused(redis_stores, user, settings):
    token = get_token(Client()).json()["token"]
    settings.API_TOKEN_MAX_AGE = -1
    response = Client(headers={"Authorization": f"Bearer {token}"}).get("/api/me")
    assert response.status_code == 401


def test_changing_the_password_revokes_tokens(redis_stores, user):
    token = get_token(Client()).json()["token"]
    user.set_password("a new one entirely")
    user.save()
    assert Client(headers={"Authorization": f"Bearer {token}"}).get("/api/me").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"username": "ada"}, 400, "'password'"),
        ({"password": PASSWORD}, 400, "'username'"),
        ({"username": "ada", "password": 5}, 400, "'password'"),
        ({"username": "ada", "password": "wrong"}, 401, "wrong username or password"),
    ],
)
def test_bad_token_requests(redis_stores, user, body, status, named):
    response = Client().post("/api/token", body, content_type="application/json")
    assert response.status_code == status
    assert named in response.json()["error"]


# Throttling: per (username, client address) and per client address


def test_login_is_throttled_after_repeated_failures(redis_stores, user, redis_db):
    client = Client()
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert client.post("/accounts/login/", {"username": "ada", "password": "guess"}).status_code == 200
    locked = client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert locked.status_code == 429
    assert "too many failed logins" in locked.content.decode()
    assert get_token(Client()).status_code == 429
    # The counts live in the shared Redis, where every instance sees them.
    assert redis_db.keys("*login-failures:user-address:*")
    assert redis_db.keys("*login-failures:address:*")


def test_failures_from_one_address_do_not_lock_out_another(redis_stores, user):
    guesser, owner = Client(REMOTE_ADDR="192.0.2.1"), Client(REMOTE_ADDR="192.0.2.2")
    for _ in range(settings.LOGIN_MAX_FAILURES + 3):
        guesser.post("/accounts/login/", {"username": "ada", "password": "guess"})
    assert guesser.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 429
    assert owner.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
    assert get_token(Client(REMOTE_ADDR="192.0.2.2")).status_code == 200


def test_throttle_counts_the_username_the_form_logs_in(redis_stores, user):
    client = Client()
    for _ in range(settings.LOGIN_MAX_FAILURES):
        client.post("/accounts/login/", {"username": "ada", "password": "guess"})
    # The form strips spaces, so "ada   " is ada: still locked out.
    padded = client.post("/accounts/login/", {"username": "ada   ", "password": PASSWORD})
    assert padded.status_code == 429
    assert get_token(Client(), username=" ada ").status_code == 429


def test_one_address_guessing_many_usernames_is_throttled(redis_stores, user, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    sprayer = Client(REMOTE_ADDR="192.0.2.1")
    answers = [get_token(sprayer, username=f"user{n}", password="guess").status_code for n in range(10)]
    assert answers == [401] * 8 + [429] * 2
    assert get_token(Client(REMOTE_ADDR="192.0.2.1")).status_code == 429
    assert get_token(Client(REMOTE_ADDR="192.0.2.2")).status_code == 200


def test_an_ipv6_client_counts_by_its_64_whichever_address_it_picks(redis_stores, user, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    answers = [get_token(Client(REMOTE_ADDR=f"2001:db8:1:2::{n:x}"), username=f"user{n}", password="guess").status_code
               for n in range(6)]
    assert answers == [401] * 4 + [429] * 2
    assert get_token(Client(REMOTE_ADDR="2001:db8:1:3::1")).status_code == 200
    # IPv4 clients seen through a dual-stack listener, and loopback, are each their own address, not one ::/64.
    mapped = Client(REMOTE_ADDR="::ffff:192.0.2.7")
    assert [get_token(mapped, username=f"user{n}", password="guess").status_code for n in range(5)] == [401] * 4 + [429]
    for address in ("::ffff:192.0.2.8", "::1"):
        assert get_token(Client(REMOTE_ADDR=address)).status_code == 200


def test_the_address_limit_counts_failures_not_logins(redis_stores, django_user_model, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    office = Client(REMOTE_ADDR="192.0.2.1")
    for n in range(10):
        django_user_model.objects.create_user(f"clerk{n}", password=PASSWORD)
        assert get_token(office, username=f"clerk{n}").status_code == 200


def test_forwarded_for_counts_only_with_the_proxy_secret(redis_stores, user, settings):
    settings.PROXY_SECRET = "the cluster's secret"

    def via(secret, forwarded_for):
        return Client(REMOTE_ADDR="127.0.0.9", HTTP_X_LAB_PROXY_SECRET=secret, HTTP_X_FORWARDED_FOR=forwarded_for)

    for n in range(settings.LOGIN_MAX_FAILURES):
        assert get_token(via("the cluster's secret", f"192.0.2.{n}, 192.0.2.20"), password="guess").status_code == 401
    assert get_token(via("the cluster's secret", "192.0.2.20")).status_code == 429
    assert get_token(via("the cluster's secret", "192.0.2.21")).status_code == 200
    # A wrong secret is no proof: the address is the connection's, a new one each time or not.
    for n in range(settings.LOGIN_MAX_FAILURES):
        assert get_token(via("a guess", f"192.0.2.{30 + n}"), password="guess").status_code == 401
    assert get_token(via("a guess", "192.0.2.40")).status_code == 429


def test_forwarded_for_counts_only_from_a_trusted_proxy(redis_stores, user, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.8/30"]  # 127.0.0.8 to 127.0.0.11

    def via_proxy(forwarded_for):
        return Client(REMOTE_ADDR="127.0.0.9", HTTP_X_FORWARDED_FOR=forwarded_for)

    # The right-most entry is the one the proxy appended; the rest is the client's.
    for n in range(settings.LOGIN_MAX_FAILURES):
        assert get_token(via_proxy(f"10.0.0.{n}, 192.0.2.1"), password="guess").status_code == 401
    assert get_token(via_proxy("192.0.2.1")).status_code == 429
    assert get_token(via_proxy("192.0.2.1, 192.0.2.2")).status_code == 200
    # Straight from a client, the header is the client's word: ignored.
    direct = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert get_token(direct).status_code == 200
    for _ in range(settings.LOGIN_MAX_FAILURES):
        get_token(Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.3"), password="guess")
    assert get_token(via_proxy("192.0.2.3")).status_code == 200
    assert get_token(Client(REMOTE_ADDR="127.0.0.1")).status_code == 429


@pytest.mark.parametrize("username", ["ada lovelace", "x" * 240, "ünïcödé"])
def test_any_username_is_a_legal_counter_key(session_store, username):
    # memcached refuses keys with spaces or over 250 bytes; the key is hashed.
    assert get_token(Client(), username=username).status_code == 401


def test_a_good_login_clears_the_failures(redis_stores, user):
    client = Client()
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        client.post("/accounts/login/", {"username": "ada", "password": "guess"})
    assert client.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        assert get_token(Client(), password="guess").status_code == 401
    assert get_token(Client()).status_code == 200


def test_a_cached_user_is_handed_out_as_a_copy_that_shares_nothing_mutable(django_user_model):
    from accounts.middleware import _copy

    ada = django_user_model.objects.create_user("ada", password=PASSWORD)
    ada._state.fields_cache["made_up"] = "cached"
    copy = _copy(ada)
    assert copy is not ada and copy == ada and copy.username == "ada"
    copy.username, copy._state.adding = "bob", True
    copy._state.fields_cache["made_up"] = "changed"
    assert (ada.username, ada._state.adding, ada._state.fields_cache["made_up"]) == ("ada", False, "cached")
    assert copy._state.db == ada._state.db
    copy.username = "ada"
    copy.save()  # still the stored row, not a new one
    assert django_user_model.objects.count() == 1
