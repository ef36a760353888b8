"""A store that fails gives a fast 503 naming it: never a hang, a 500 or a silent logout."""

import re
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.test import Client

from chat.models import Message
from deploy.cluster import free_port, wait_for
from labcore.config import store_settings
from labcore.sessions.cached_db import SessionStore as CachedDBStore
from labcore.stores import reset_breakers
from maintenance import scheduler
from maintenance.lease import Lease
from tests.conftest import use_stores
from tests.servers import memcached_server, redis_server

PASSWORD = "correct horse battery"
FAST = 2.0  # seconds: the socket timeout is 0.5 s; redis-py's default retries would take far longer


@pytest.fixture
def own_stores(settings, tmp_path, db, django_user_model):
    """Private Redis and memcached servers that a test may kill or pause."""
    redis, memcached = redis_server().start(), memcached_server().start()
    django_user_model.objects.create_user("ada", password=PASSWORD)

    def configure(session_store, presence_store="redis"):
        use_stores(
            settings,
            session_store=session_store,
            presence_store=presence_store,
            redis=redis,
            memcached=memcached,
            tmp_path=tmp_path,
        )
        client = Client()
        assert client.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 302
        return client

    configure.redis, configure.memcached = redis, memcached
    yield configure
    try:
        redis.stop()
    finally:
        memcached.stop()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(response, elapsed, store):
    assert response.status_code == 503
    assert response.json()["store"] == store
    assert store in response.json()["error"]
    assert elapsed < FAST


@pytest.mark.parametrize(("session_store", "server"), [("redis", "redis"), ("memcached", "memcached")])
def test_dead_session_store_is_a_fast_503(own_stores, session_store, server):
    client = own_stores(session_store)
    getattr(own_stores, server).stop()

    assert_unavailable(*timed(lambda: client.get("/api/me")), session_store)
    page, elapsed = timed(lambda: client.get("/rooms/lobby/"))
    assert page.status_code == 503 and elapsed < FAST
    assert f"needs <strong>{session_store}</strong>" in page.content.decode()
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["store"]) == (503, session_store)
    # Liveness touches nothing external, session cookie or not.
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("store", ["redis", "memcached"])
def test_paused_store_times_out_fast_and_the_session_survives(own_stores, store):
    client = own_stores(store)
    client_id = str(uuid.uuid4())
    server = getattr(own_stores, store)
    server.pause()
    assert_unavailable(*timed(lambda: client.get("/api/me")), store)
    post = lambda: client.post(  # noqa: E731
        "/api/rooms/lobby/messages", {"text": "during", "client_id": client_id}, content_type="application/json"
    )
    assert_unavailable(*timed(post), store)
    assert not Message.objects.filter(client_id=client_id).exists()

    server.resume()
    # The breaker lets a request try the store again after its interval.
    wait_for(lambda: client.get("/api/me").status_code == 200, timeout=settings.STORE_BREAKER_INTERVAL + 10,
             what=f"{store} to be used again")
    assert client.get("/api/me").json()["username"] == "ada"
    assert post().status_code == 201
    assert post().status_code == 200
    assert Message.objects.filter(client_id=client_id).count() == 1


def test_new_session_gets_503_not_a_loop_of_retries(own_stores):
    # Django's cache engine would try 10,000 session keys and then fail with a 500.
    own_stores("redis", presence_store="memory")
    own_stores.redis.stop()
    form = {"username": "grace", "password1": PASSWORD, "password2": PASSWORD}
    response, elapsed = timed(lambda: Client().post("/accounts/signup/", form))
    assert response.status_code == 503 and elapsed < FAST
    assert "needs <strong>redis</strong>" in response.content.decode()


def test_missing_session_folder_is_a_503_not_a_logout(own_stores, settings):
    client = own_stores("file")
    folder = Path(settings.SESSION_FILE_PATH)
    folder.rename(folder.with_name("moved"))
    assert_unavailable(*timed(lambda: client.get("/api/me")), "file")
    folder.with_name("moved").rename(folder)
    assert client.get("/api/me").json()["username"] == "ada"


def test_cached_db_survives_a_dead_cache(own_stores):
    client = own_stores("cached_db", presence_store="memory")
    own_stores.redis.stop()
    me = client.get("/api/me")
    assert (me.status_code, me.json()["username"]) == (200, "ada")


def test_cached_db_skips_a_hung_cache_at_once_after_one_timeout(own_stores):
    client = own_stores("cached_db", presence_store="memory")
    own_stores.redis.pause()
    try:
        first, waited = timed(lambda: client.get("/api/me"))
        then, skipped = timed(lambda: client.get("/api/me"))
    finally:
        own_stores.redis.resume()
    assert (first.status_code, then.status_code) == (200, 200)
    # The first request waited out the cache's timeout and read the
    # database; the breaker then skips the cache without waiting.
    assert waited >= settings.STORE_TIMEOUT and skipped < settings.STORE_TIMEOUT, (waited, skipped)


def test_dead_presence_store_is_a_503(own_stores):
    client = own_stores("db")
    own_stores.redis.stop()
    assert_unavailable(*timed(lambda: client.post("/api/rooms/lobby/presence")), "redis")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["store"]) == (503, "redis")


def test_bearer_token_needs_no_session_store(own_stores):
    token = Client().post("/api/token", {"username": "ada", "password": PASSWORD}).json()["token"]
    own_stores("redis")
    own_stores.redis.stop()
    bearer = Client(headers={"Authorization": f"Bearer {token}"})
    assert bearer.get("/api/me").json()["auth"] == "token"
    sent = bearer.post(
        "/api/rooms/lobby/messages", {"text": "still here", "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert sent.status_code == 201


# What a 503 tells the client, and what only the log knows


def _session_store_failing(failure, settings, tmp_path):
    """Point the site at a session store that fails as named; return strings only the log may show."""
    dead = [str(free_port()) for _ in range(2)]
    targets = {"redis_url": f"redis://:secret-password@127.0.0.1:{dead[0]}/0"}
    if failure == "every Sentinel down":
        targets.update(redis_url="redis://:secret-password@/0", redis_service="lab",
                       redis_sentinels=tuple(("127.0.0.1", int(port)) for port in dead))
    values = store_settings(session_store="file" if failure == "session folder gone" else "redis",
                            presence_store="memory", memcached_url="unix:/nowhere.sock", state_dir=tmp_path,
                            timeout=settings.STORE_TIMEOUT, **targets)
    for name, value in values.items():
        setattr(settings, name, value)
    settings.REDIS_URL = targets["redis_url"]
    if failure == "session folder gone":
        return [str(tmp_path), "is missing"]
    return ["127.0.0.1", *dead, "host=", "secret-password"]


@pytest.mark.parametrize("failure", ["session folder gone", "Redis on a dead port", "every Sentinel down"])
def test_a_503_names_the_store_and_a_request_id_and_the_detail_only_in_the_log(failure, settings, tmp_path, db,
                                                                               caplog):
    internals = _session_store_failing(failure, settings, tmp_path)
    store = settings.SESSION_STORE
    client = Client()
    client.cookies["sessionid"] = "a" * 32  # a session to load: the store is asked
    # Twice each: the second is refused by the store's breaker, whose words are internal too.
    paths = ["/api/me", "/api/me", "/rooms/lobby/", "/rooms/lobby/"]
    if store == "redis":
        paths.append("/readyz")  # the file engine has no readiness check
    answers = [client.get(path) for path in paths]
    ids = []
    for answer in answers:
        body = answer.content.decode()
        assert answer.status_code == 503, body
        if answer["Content-Type"].startswith("text/html"):
            assert f"<strong>{store}</strong>" in body
            ids.append(re.search(r"Request id <code>([0-9a-f]{16})</code>", body).group(1))
        else:
            assert answer.json()["store"] == store and store in answer.json()["error"]
            ids.append(answer.json()["request_id"])
        found = [text for text in internals if text in body]
        assert not found, (found, body)
    assert len(set(ids)) == len(answers)
    logged = {record.getMessage().split(":")[0].removeprefix("request "): record.getMessage()
              for record in caplog.records if record.name == "labcore.errors"}
    for request_id in ids:
        assert any(text in logged[request_id] for text in internals), logged[request_id]


def test_cached_db_never_reads_an_older_copy_than_it_acknowledged(own_stores):
    client = own_stores("cached_db", presence_store="memory")
    key = client.cookies["sessionid"].value

    def cached_copy():
        return (caches["sessions"].get(CachedDBStore.cache_key_prefix + key) or {}).get("lab_counter")

    def row():
        return Session.objects.get(session_key=key).get_decoded()["lab_counter"]["counter"]

    def write(counter):
        return client.post("/api/session-counter", {"counter": counter}, content_type="application/json")

    def read():
        response = client.get("/api/session-counter")
        assert response.status_code == 200, response.content[:300]
        return response.json()["counter"]

    assert write(1).status_code == 200
    assert read() == 1
    own_stores.redis.pause()
    try:
        during = write(2)
        acknowledged = 2 if during.status_code == 200 else 1
        assert read() == acknowledged  # reads go on, from the database
    finally:
        own_stores.redis.resume()
    # Whatever was acknowledged is what the cache, the database and every read hold once Redis is back.
    assert (cached_copy() or {"counter": acknowledged})["counter"] == acknowledged == row()
    wait_for(lambda: write(acknowledged).status_code == 200, timeout=settings.STORE_BREAKER_INTERVAL + 10,
             what="the cache to be used again")
    assert [read() for _ in range(3)] == [acknowledged] * 3
    # The write was refused: it needed the cached copy gone, and the cache did not answer.
    assert (during.status_code, during.json()["store"]) == (503, "redis")


def test_the_lease_view_names_a_failed_redis_and_a_request_id_and_the_detail_only_in_the_log(
        redis_stores, logged_in, monkeypatch, caplog):
    dead = free_port()
    lease = Lease(redis.Redis(port=dead, socket_connect_timeout=0.5, socket_timeout=0.5), "lab-lease", ttl=2,
                  instance="app1")
    monkeypatch.setattr(scheduler, "_scheduler", scheduler.Scheduler(lease=lease, period=60, retry=1, instance="app1"))
    for path in ("/api/lease", "/lease/"):
        reset_breakers()  # the lease's Redis is not the sessions' here: the page's session must load
        answer = logged_in.get(path)
        body = answer.content.decode()
        assert answer.status_code == 200 and "redis is unavailable" in body, body
        assert str(dead) not in body and "127.0.0.1" not in body, body
    logged = [record.getMessage() for record in caplog.records if record.name == "maintenance.views"]
    assert len(logged) == 2 and all(str(dead) in line for line in logged), logged
