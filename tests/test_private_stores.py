"""Stores only the site can use (issue #12): credentials, no pickle, private files, loud file
sessions, durable commits, and process records that cannot name a stranger; etcd's too (issue #26).
"""

import base64
import os
import pickle
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from django.conf import settings
from django.core.cache import caches
from django.test import Client
from django.utils.module_loading import import_module
from pymemcache.client.base import Client as MemcachedClient

from deploy import certificates
from deploy import cluster as deploy_cluster
from deploy.cluster import alive, etcd, running, start_time, stop
from labcore import registry
from labcore.config import store_settings
from labcore.sessions.file import SessionStore as FileSession
from maintenance.jobs import clear_expired_elsewhere
from tests.clusters import ROOT, deploy
from tests.conftest import use_etcd, use_stores
from tests.servers import EtcdCluster, postgres_server

PASSWORD = "correct horse battery"
SESSION_KEY = "a" * 32  # as Django makes them: 32 lowercase letters and digits


# Credentials


def test_redis_refuses_a_client_without_the_password(redis_service):
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=redis_service.port).ping()
    assert redis.Redis.from_url(redis_service.url).ping()


def _uid(pid):
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("Uid:")).split()[1])


def test_memcached_is_reachable_only_through_a_private_socket_and_not_as_root(memcached_service):
    assert memcached_service.url.startswith("unix:")
    path = memcached_service.url.removeprefix("unix:")
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert _uid(memcached_service.pid) != 0
    if os.geteuid() == 0:
        # Another user of the machine cannot even open the socket.
        attempt = subprocess.run(
            ["/usr/bin/python3", "-c", "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])", path],
            user="nobody", capture_output=True, text=True, timeout=30,
        )
        assert attempt.returncode != 0 and "PermissionError" in attempt.stderr
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)  # the site's user can


@pytest.fixture(scope="module")
def postgres():
    server = postgres_server().start()
    yield server
    server.stop()


def test_postgres_refuses_a_client_without_the_password_and_the_site_is_no_superuser(postgres):
    for user in ("lab", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=postgres.port, user=user, dbname="postgres", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=postgres.port, user="lab", password="guess", dbname="lab")
    with psycopg.connect(postgres.url.replace("postgres://", "postgresql://", 1)) as connection:
        superuser, owner, fsync = connection.execute(
            "SELECT rolsuper, (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'lab'),"
            " current_setting('fsync') FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (superuser, owner, fsync) == (False, "lab", "on")


@pytest.fixture(scope="module")
def etcd_alone():
    cluster = EtcdCluster(1)
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd_sessions(settings, etcd_alone, redis_service, memcached_service, redis_db, tmp_path, db):
    return use_etcd(settings, etcd_alone, presence_store="memory", redis=redis_service, memcached=memcached_service,
                    tmp_path=tmp_path)


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _answered(url, body=None, **tls):
    """The status of a POST of body (a GET without), or None if the member would not speak (TLS refused, closed)."""
    try:
        return requests.request("GET" if body is None else "POST", url, json=body, timeout=10, **tls).status_code
    except requests.ConnectionError:
        return None


def test_etcd_answers_only_its_own_certificate_and_keeps_no_usable_session_key(etcd_sessions, django_user_model,
                                                                                tmp_path):
    django_user_model.objects.create_user("ada", password=PASSWORD)
    ada = Client()
    assert ada.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
    key = ada.cookies["sessionid"].value
    site = etcd_sessions.client()
    ((_, stored),) = site.get_prefix("sessions/")
    leases = site.post(site.get_url("/lease/leases"), json={}).get("leases", [])

    # Every call the review made without credentials (issue #26): keys, and what etcd's passwords never guarded.
    member = etcd_sessions.members[0]
    calls = {
        "kv/range": {"key": _b64("sessions/"), "range_end": _b64("sessions0")},
        "kv/put": {"key": _b64(f"sessions/{key}"), "value": _b64("planted")},
        "lease/grant": {"TTL": 600},
        "lease/keepalive": {"ID": stored["lease"]},
        "cluster/member/list": {},
        "maintenance/alarm": {"action": "ACTIVATE", "memberID": site.status()["header"]["member_id"],
                              "alarm": "NOSPACE"},
    }
    ca = etcd_sessions.settings["ETCD_CA"]
    stranger = certificates.issue(tmp_path / "stranger", {}, ["client"])  # another authority's
    ways = {"https without a certificate": {"verify": ca},
            "https with another authority's certificate": {"verify": ca, "cert": (str(stranger / "client.pem"),
                                                                                   str(stranger / "client-key.pem"))},
            "plain http": {}}
    answers = {(path, way): _answered(f"{'http' if way == 'plain http' else 'https'}://{member['host']}:"
                                      f"{member['port']}/v3/{path}", body, **tls)
               for path, body in calls.items() for way, tls in ways.items()}
    assert {call: status for call, status in answers.items() if status is not None and status < 400} == {}
    peers = f"{member['peer_host']}:{member['peer_port']}/members"  # Raft's side: the member list, to begin with
    assert [_answered(f"https://{peers}", verify=ca), _answered(f"http://{peers}")] == [None, None]

    # Nothing happened: no alarm, no lease, the key as it was; the site still reads and writes.
    assert site.post(site.get_url("/maintenance/alarm"), json={"action": "GET"}).get("alarms", []) == []
    assert site.post(site.get_url("/lease/leases"), json={}).get("leases", []) == leases
    assert ada.get("/api/me").json()["username"] == "ada"
    assert ada.post("/api/session-counter", {"counter": 1}, content_type="application/json").status_code == 200

    # What etcd keeps is no login either, should its files or a backup leak.
    stored_name = stored["key"].decode()
    assert key not in stored_name
    replay = Client()
    replay.cookies["sessionid"] = stored_name.removeprefix("sessions/")
    assert replay.get("/api/me").status_code == 401


def test_etcd_client_certificate_is_no_peer_and_no_member(etcd_alone):
    """The client certificate (the site's; every Patroni node holds a copy) opens no Raft connection on a peer
    port, and serves as no member's: it is a client's alone. A member's own certificate does both."""
    member = etcd_alone.members[0]
    files = etcd.client_tls(member)
    own = (str(Path(member["tls"]) / f"{member['name']}.pem"), str(Path(member["tls"]) / f"{member['name']}-key.pem"))
    peers = f"https://{member['peer_host']}:{member['peer_port']}/members"
    assert [_answered(peers, verify=files["cacert"], cert=(files["cert"], files["key"])),
            _answered(peers, verify=files["cacert"], cert=own)] == [None, 200]

    def serves(cert, address):
        return subprocess.run([shutil.which("openssl"), "verify", "-CAfile", files["cacert"], "-purpose", "sslserver",
                               "-verify_ip", address, cert], capture_output=True, check=False).returncode == 0

    assert [serves(files["cert"], member["host"]), serves(own[0], member["host"])] == [False, True]


# Nothing unpickled


class Planted:
    """A pickle that, when loaded, creates a file: the attacker's `id` in miniature."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def stores_for(settings, redis_service, memcached_service, redis_db, tmp_path, db):
    def use(session_store):
        use_stores(settings, session_store=session_store, presence_store="memory", redis=redis_service,
                   memcached=memcached_service, tmp_path=tmp_path)
    return use


@pytest.mark.parametrize("session_store", ["redis", "cached_db", "memcached"])
def test_a_pickle_planted_under_a_session_key_is_never_loaded(stores_for, session_store, memcached_service,
                                                             redis_db, client, tmp_path):
    """The payload would create a file if unpickled; the request must answer as no session."""
    stores_for(session_store)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Planted(marker))
    engine = import_module(settings.SESSION_ENGINE).SessionStore(SESSION_KEY)
    key = caches["sessions"].make_and_validate_key(engine.cache_key)
    if registry.SESSION_STORES[session_store].cache == "redis":
        redis_db.set(key, payload)
    else:
        planter = MemcachedClient(memcached_service.url.removeprefix("unix:"))
        planter.set(key, payload, flags=1)  # pymemcache's pickle flag
        planter.close()
    client.cookies["sessionid"] = SESSION_KEY
    response = client.get("/api/me")
    assert response.status_code == 401  # no session
    assert not marker.exists()


def test_every_cache_alias_reads_json_or_lives_in_the_process(tmp_path):
    for name, row in registry.SESSION_STORES.items():
        values = store_settings(session_store=name, presence_store=row.presence, redis_url="redis://:pw@h:1/0",
                                memcached_url="unix:/x.sock", state_dir=tmp_path, timeout=0.5)
        for alias, cache in values["CACHES"].items():
            options = cache.get("OPTIONS", {})
            if "locmem" in cache["BACKEND"]:
                continue  # pickles in process memory only: nothing from outside reaches it
            serializer = options.get("SERIALIZER") or type(options.get("serde")).__name__
            assert "JSON" in serializer, (name, alias, cache)


@pytest.mark.parametrize("session_store", ["redis", "memcached"])
def test_counters_still_count_and_values_round_trip(stores_for, session_store):
    stores_for(session_store)
    cache = caches["shared"]
    assert cache.add("count", 1, 60)
    assert cache.incr("count") == 2
    assert cache.decr("count") == 1
    assert cache.get("count") == 1
    cache.set("data", {"a": [1, "x"], "b": None}, 60)
    assert cache.get("data") == {"a": [1, "x"], "b": None}


# Private state


def _readable_by_others(folder):
    found = []
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if stat.S_IMODE(path.lstat().st_mode) & 0o077:
            found.append(f"{path}: {oct(stat.S_IMODE(path.lstat().st_mode))}")
    return found


def test_the_site_keeps_its_state_folder_private_from_the_start(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labsite.settings", "SECRET_KEY": "private-state-test",
           "STATE_DIR": str(state), "SESSION_STORE": "file"}
    for name in ("DEBUG", "DATABASE_URL", "DURABLE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, umask=0o022)
    assert done.returncode == 0, done.stderr
    assert (state / "site.sqlite3").exists() and (state / "sessions").is_dir()
    assert _readable_by_others(state) == []
    # Committed to disk when acknowledged: SQLite's synchronous=FULL (2), NORMAL (1) only with DURABLE=0.
    show = ("from django.db import connection; "
            "print(connection.cursor().execute('PRAGMA synchronous').fetchone()[0])")
    for durable, expected in ((None, "2"), ("0", "1")):
        shell = subprocess.run([sys.executable, "manage.py", "shell", "-c", show], cwd=ROOT, capture_output=True,
                               env={**env, **({"DURABLE": durable} if durable else {})}, text=True, timeout=60)
        assert shell.stdout.strip().splitlines()[-1] == expected, shell.stderr


def _umask(pid):
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line for line in lines if line.startswith("Umask:")).split()[1]


def test_a_cluster_keeps_every_file_private_and_names_no_session_key(cluster, tmp_path):
    from tests.http import Browser

    state = tmp_path / "private"
    c = cluster(instances=1, sessions="file", presence="memory", state_dir=state)
    browser = Browser()
    assert browser.sign_up(c.url, "ada", PASSWORD).status == 302
    key = browser.cookie("sessionid")
    assert key
    files = [p.name for p in (state / "sessions").iterdir()]
    assert len(files) == 1 and key not in files[0]
    for name in ("cluster.json", "haproxy.cfg", "haproxy.sock", "site.sqlite3", "logs/app1.log"):
        assert (state / name).exists(), name
    assert _readable_by_others(state) == []
    recorded = deploy_cluster.load(state)
    assert {_umask(recorded.haproxy["pid"]), _umask(recorded.instances["app1"]["pid"])} == {"0077"}


# File sessions fail loudly


@pytest.fixture
def file_sessions(stores_for):
    stores_for("file")


def _fail(errno_name):
    import errno

    def failing(*args, **kwargs):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))
    return failing


def test_a_failed_session_write_is_a_503_and_leaves_no_empty_file(file_sessions, client, user, monkeypatch,
                                                                   settings):
    # A full disk: no temporary file can be made.
    monkeypatch.setattr("tempfile.mkstemp", _fail("ENOSPC"))
    response = client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 503
    assert b"file" in response.content
    assert os.listdir(settings.SESSION_FILE_PATH) == []


def test_a_failed_session_delete_is_a_503_and_the_login_stays_visible(file_sessions, logged_in, monkeypatch,
                                                                     settings):
    monkeypatch.setattr("os.unlink", _fail("EIO"))
    response = logged_in.post("/accounts/logout/")
    assert response.status_code == 503
    assert b"file" in response.content
    monkeypatch.undo()
    assert logged_in.get("/api/me").status_code == 200  # not silently half logged out


def test_maintenance_removes_expired_session_files(file_sessions, settings):
    live, expired = FileSession(), FileSession()
    live.update({"n": 1})
    live.save()
    expired.update({"n": 2})
    expired.set_expiry(1)
    expired.save()
    old = time.time() - 60
    os.utime(expired._key_to_file(), (old, old))
    assert clear_expired_elsewhere() == 1
    assert FileSession(live.session_key).load() == {"n": 1}
    assert not os.path.exists(expired._key_to_file())


# Process records


@pytest.fixture
def bystander():
    """A harmless process whose pid a stale record could name."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_a_recycled_pid_is_never_signalled(bystander, tmp_path):
    stranger = {"pid": bystander.pid, "started": start_time(bystander.pid) - 1}
    assert alive(bystander.pid) and not running(stranger)
    stop(stranger, sig=signal.SIGKILL, timeout=1)
    assert bystander.poll() is None

    # The same through `deploy down`, with a cluster record naming it.
    state = tmp_path / "stale"
    deploy_cluster.make_private_folder(state)
    deploy_cluster.Cluster(state_dir=str(state), port=1, lb="roundrobin", sessions="db", presence="memory", db="sqlite",
                   secret_key="x", haproxy=stranger, instances={"app1": {"port": 2, **stranger}}).save()
    status = deploy(state, "status", "--json")
    assert '"alive": true' not in status.stdout
    deploy(state, "down")
    time.sleep(0.2)
    assert bystander.poll() is None
