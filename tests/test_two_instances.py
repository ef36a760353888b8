"""Two gunicorn instances started by hand, sharing one SECRET_KEY.

With Redis for sessions and presence, a login made on one is honoured on
the other and a heartbeat on one shows on the other. With memory for both,
neither is true: each process knows only its own users.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cluster import free_port, port_open, start_time, stop, wait_for
from tests.http import Browser
from tests.servers import postgres_server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


@pytest.fixture
def instances(tmp_path, redis_service):
    started = []

    def start(session_store, presence_store, database_url=None):
        env = {
            **os.environ,
            "SECRET_KEY": "two-instances-shared-key",
            "SESSION_STORE": session_store,
            "PRESENCE_STORE": presence_store,
            "REDIS_URL": redis_service.url.removesuffix("/0") + "/1",
            "STATE_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "labsite.settings",
        }
        env.pop("DEBUG", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
        )
        urls = []
        for name in ("app1", "app2"):
            port = free_port()
            log = open(tmp_path / f"{name}.log", "wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "labsite.wsgi", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--threads", "4"],
                cwd=ROOT, env={**env, "INSTANCE_NAME": name}, stdout=log, stderr=log,
                start_new_session=True,
            )
            started.append({"pid": process.pid, "started": start_time(process.pid)})
            wait_for(lambda: port_open(port), timeout=30, what=f"{name} on port {port}")
            urls.append(f"http://127.0.0.1:{port}")
        return urls

    yield start
    for record in started:
        stop(record, sig=signal.SIGKILL)


def test_shared_redis_lets_any_instance_serve_any_user(instances, tmp_path):
    one, two = instances("redis", "redis")
    ada, bob = Browser(), Browser()
    assert ada.sign_up(one, "ada", PASSWORD).status == 302
    assert bob.sign_up(two, "bob", PASSWORD).status == 302

    me = ada.get(f"{two}/api/me")
    assert (me.status, me.json()["username"], me.json()["instance"]) == (200, "ada", "app2")
    assert me.headers["X-Served-By"] == "app2"

    ada.post(f"{one}/api/rooms/lobby/presence")
    online = bob.post(f"{two}/api/rooms/lobby/presence").json()
    assert online["online"] == ["ada", "bob"]

    with sqlite3.connect(tmp_path / "site.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_memory_state_stays_inside_each_process(instances):
    one, two = instances("memory", "memory")
    ada, bob = Browser(), Browser()
    assert ada.sign_up(one, "ada", PASSWORD).status == 302
    assert bob.sign_up(two, "bob", PASSWORD).status == 302

    assert b"logged in as <strong>ada</strong>" in ada.get(f"{one}/rooms/lobby/").body
    page = ada.get(f"{two}/rooms/lobby/")
    assert page.status == 302 and page.headers["Location"].startswith("/accounts/login/")
    # Worse than a miss: app2 finds no such session and deletes the cookie,
    # so the login that app1 still holds is gone from the browser too.
    assert ada.cookie("sessionid") is None
    assert ada.get(f"{one}/api/me").status == 401

    assert ada.log_in(one, "ada", PASSWORD).status == 302
    assert ada.post(f"{one}/api/rooms/lobby/presence").json()["online"] == ["ada"]
    seen_by_two = bob.post(f"{two}/api/rooms/lobby/presence").json()
    assert (seen_by_two["online"], seen_by_two["instance"]) == (["bob"], "app2")


@pytest.fixture
def postgres():
    server = postgres_server().start()
    yield server.url
    server.stop()


def test_postgres_carries_sessions_and_messages_across_instances(instances, postgres):
    one, two = instances("db", "redis", database_url=postgres)
    ada, bob = Browser(), Browser()
    assert ada.sign_up(one, "ada", PASSWORD).status == 302
    assert bob.sign_up(two, "bob", PASSWORD).status == 302
    assert ada.get(f"{two}/api/me").json()["username"] == "ada"
    sent = ada.post(
        f"{one}/api/rooms/lobby/messages",
        json_body={"text": "hello from app1", "client_id": "0b5e7d3c-55a4-4d1e-9a43-52c1ee0f0a01"},
    )
    assert sent.status == 201
    read = bob.get(f"{two}/api/rooms/lobby/messages").json()["messages"]
    assert [(m["author"], m["text"]) for m in read] == [("ada", "hello from app1")]


@pytest.mark.parametrize(("store", "locked_on_the_other"), [("redis", True), ("memory", False)])
def test_login_throttle_is_shared_only_through_a_shared_store(instances, store, locked_on_the_other):
    one, two = instances(store, store)
    Browser().sign_up(one, "ada", PASSWORD)
    guesser = Browser(source="127.0.0.2")
    for _ in range(5):
        assert guesser.log_in(one, "ada", "guess").status == 200
    assert guesser.log_in(one, "ada", PASSWORD).status == 429
    # The same guesser on the other instance: held back only if the count is shared.
    on_two = Browser(source="127.0.0.2").log_in(two, "ada", PASSWORD).status
    assert on_two == (429 if locked_on_the_other else 302)
    # The owner, at another address, is not locked out on either instance.
    assert Browser(source="127.0.0.3").log_in(one, "ada", PASSWORD).status == 302
    assert Browser(source="127.0.0.3").log_in(two, "ada", PASSWORD).status == 302
