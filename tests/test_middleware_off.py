"""MIDDLEWARE_OFF: the layers a benchmark may leave out, refused by name otherwise, and the poll mix without them."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from labcore.middleware_off import middleware_without
from tests.clusters import ROOT

PASSWORD = "correct horse battery"
KEPT = ["labcore.sessions.middleware.SessionMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
        "accounts.middleware.CachedAuthenticationMiddleware"]


def test_empty_leaves_middleware_as_it_is():
    assert middleware_without(settings.MIDDLEWARE, "") == settings.MIDDLEWARE
    assert middleware_without(settings.MIDDLEWARE, " ") == settings.MIDDLEWARE


def test_all_leaves_out_every_layer_but_those_the_poll_mix_needs():
    assert middleware_without(settings.MIDDLEWARE, "all") == KEPT


def test_a_layer_is_named_by_its_class_name_or_its_dotted_path():
    left = middleware_without(settings.MIDDLEWARE, "CommonMiddleware+django.middleware.clickjacking."
                                                   "XFrameOptionsMiddleware")
    assert left == [path for path in settings.MIDDLEWARE
                    if path not in ("django.middleware.common.CommonMiddleware",
                                    "django.middleware.clickjacking.XFrameOptionsMiddleware")]


def test_a_name_that_is_no_layer_is_refused_naming_it_and_the_layers_that_may_be_given():
    with pytest.raises(ImproperlyConfigured, match="'NoSuchMiddleware' is no layer of MIDDLEWARE") as refused:
        middleware_without(settings.MIDDLEWARE, "CommonMiddleware+NoSuchMiddleware")
    assert "ServedByMiddleware, ProxyMiddleware, SecurityMiddleware" in str(refused.value)
    assert "SessionMiddleware" not in str(refused.value)


@pytest.mark.parametrize("name", ["SessionMiddleware", "accounts.middleware.CachedAuthenticationMiddleware",
                                  "CsrfViewMiddleware"])
def test_a_layer_the_poll_mix_needs_is_refused_by_name(name):
    with pytest.raises(ImproperlyConfigured, match=f"'{name}' may not be left out: "):
        middleware_without(settings.MIDDLEWARE, f"XFrameOptionsMiddleware+{name}")


def test_the_poll_mix_answers_with_every_layer_it_may_do_without_left_out(db):
    caches["shared"].clear()  # sign-ups are counted per address there; earlier tests' must not throttle this one
    with override_settings(MIDDLEWARE=middleware_without(settings.MIDDLEWARE, "all")):
        client = Client(enforce_csrf_checks=True)
        # Signed up as bench's user is (loadtest/bench/wrk.py, log_in): the form's page, then the form.
        client.get("/accounts/signup/")
        token = client.cookies[settings.CSRF_COOKIE_NAME].value
        signed_up = client.post("/accounts/signup/", {"username": "bench", "password1": PASSWORD,
                                                      "password2": PASSWORD, "csrfmiddlewaretoken": token})
        assert signed_up.status_code == 302
        token = client.cookies[settings.CSRF_COOKIE_NAME].value  # a new one at login
        poll = client.get("/api/rooms/bench/messages?after=0")
        heartbeat = client.post("/api/rooms/bench/presence", headers={"X-CSRFToken": token})
        me = client.get("/api/me")
    assert [poll.status_code, heartbeat.status_code, me.status_code] == [200, 200, 200]
    assert me.json()["username"] == "bench"
    # The layers were off: no instance's name (ServedByMiddleware), no X-Frame-Options (XFrameOptionsMiddleware).
    assert "X-Served-By" not in me and "X-Frame-Options" not in me


def test_without_the_csrf_middleware_the_api_refuses_a_forged_post_but_a_signed_up_user_gets_no_cookie(db, user):
    """Why CsrfViewMiddleware stays: not for the API's own check, which holds without it, but for the cookie."""
    caches["shared"].clear()
    without = [path for path in settings.MIDDLEWARE if path != "django.middleware.csrf.CsrfViewMiddleware"]
    with override_settings(MIDDLEWARE=without):
        signed_up = Client(enforce_csrf_checks=True)
        # No form page hands out a cookie now, and the sign-up form is not checked.
        assert signed_up.post("/accounts/signup/", {"username": "bench", "password1": PASSWORD,
                                                    "password2": PASSWORD}).status_code == 302
        no_cookie = signed_up.post("/api/rooms/bench/presence")
        # Django's login view hands out the cookie by itself (csrf_protect), and the API compares with it.
        logged_in = Client(enforce_csrf_checks=True)
        logged_in.get("/accounts/login/")
        token = logged_in.cookies[settings.CSRF_COOKIE_NAME].value
        logged_in.post("/accounts/login/", {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token})
        forged = logged_in.post("/api/rooms/bench/presence")
        sent = logged_in.post("/api/rooms/bench/presence",
                              headers={"X-CSRFToken": logged_in.cookies[settings.CSRF_COOKIE_NAME].value})
    assert settings.CSRF_COOKIE_NAME not in signed_up.cookies
    assert no_cookie.status_code == 403 and "CSRF cookie not set" in no_cookie.json()["error"]
    assert forged.status_code == 403 and "CSRF token missing" in forged.json()["error"]
    assert sent.status_code == 200


def site_start(tmp_path, off):
    """The site's settings read at start with MIDDLEWARE_OFF=off, in a process of their own."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labsite.settings", "DEBUG": "1", "STATE_DIR": str(tmp_path),
           "MIDDLEWARE_OFF": off}
    return subprocess.run([sys.executable, "-c", "from django.conf import settings; print(settings.MIDDLEWARE)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_site_reads_middleware_off_at_start_and_stops_on_a_name_that_is_no_layer(tmp_path):
    assert site_start(tmp_path, "all").stdout.strip() == str(KEPT)
    refused = site_start(tmp_path, "CommonMiddleware+NoSuchMiddleware")
    assert refused.returncode != 0
    assert "ImproperlyConfigured: MIDDLEWARE_OFF: 'NoSuchMiddleware' is no layer of MIDDLEWARE" in refused.stderr
