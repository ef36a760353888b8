"""Settings for HTTPS behind a TLS terminator, read from the environment."""

import os
import secrets
import subprocess
import sys

from tests.clusters import ROOT
from tests.http import Browser

# What a production deployment behind a TLS terminator sets (docs/operations/https.md).
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "lab.example.org",
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "CSRF_TRUSTED_ORIGINS": "https://lab.example.org",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}
SETTINGS_WE_SET = {*PRODUCTION, "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DJANGO_SETTINGS_MODULE"}


def check_deploy(tmp_path, env):
    """Run `manage.py check --deploy` as a deployment would: labsite.settings, this environment."""
    clean = {name: value for name, value in os.environ.items() if name not in SETTINGS_WE_SET}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**clean, "STATE_DIR": str(tmp_path), **env}, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    done = check_deploy(tmp_path, PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_the_defaults_suit_plain_http_and_check_deploy_says_so(tmp_path):
    done = check_deploy(tmp_path, {"SECRET_KEY": PRODUCTION["SECRET_KEY"]})
    assert done.returncode != 0
    warned = {code for code in ("W004", "W008", "W010", "W016") if f"security.{code}" in done.stderr}
    assert warned == {"W004", "W008", "W010", "W016"}, done.stderr


def test_behind_haproxy_http_is_redirected_and_https_gets_secure_cookies(cluster):
    tls = {name: value for name, value in PRODUCTION.items() if name not in ("SECRET_KEY", "ALLOWED_HOSTS")}
    # The cluster comes up at all only if /healthz and /readyz are not redirected.
    c = cluster(instances=1, env={**tls, "SECURE_HSTS_SECONDS": "60"})
    # HAProxy here ends no TLS and says so, whatever the client claims.
    claimed = Browser().get(f"{c.url}/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert claimed.status == 301
    assert claimed.headers["Location"] == f"https://127.0.0.1:{c.url.rsplit(':', 1)[1]}/accounts/login/"
    # An instance told by its TLS terminator that the client spoke https.
    app1 = f"http://127.0.0.1:{c.instance('app1')['port']}"
    page = Browser().get(f"{app1}/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert page.status == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=60; includeSubDomains; preload"
    csrf_cookie = next(h for h in page.headers.get_all("Set-Cookie") if h.startswith("csrftoken="))
    assert "Secure" in csrf_cookie
