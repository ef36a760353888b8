import shutil
from pathlib import Path

import pytest
import redis
from django.core.cache import caches
from django.test import Client

from chat import presence
from deploy import netns, web
from deploy.cluster import alive
from labcore import registry
from labcore.config import store_settings
from labcore.stores import reset_breakers
from tests import clusters
from tests.clusters import ROOT, deploy, recorded_data, recorded_pids
from tests.servers import memcached_server, redis_server

# Every session store whose servers the session-wide fixtures below start
# (Redis, memcached); a store that needs another kind has tests of its own.
MATRIX_SERVERS = {"redis", "memcached"}
SESSION_STORES = [name for name, row in registry.SESSION_STORES.items() if set(row.servers) <= MATRIX_SERVERS]


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="also run the long experiments (marked `long`)")
    parser.addoption("--swarm", action="store_true",
                     help="also run the Docker Swarm tests (marked `swarm`): they build images and start dockerd")


def pytest_collection_modifyitems(config, items):
    for marker, reason in (("long", "a long run: pass --long to include it"),
                           ("swarm", "builds images and starts dockerd: pass --swarm to include it")):
        if config.getoption(f"--{marker}"):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker(marker):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def closed_breakers():
    """Every test starts with its stores trusted: a store an earlier test broke is not this one's."""
    reset_breakers()


@pytest.fixture(scope="session")
def redis_service():
    server = redis_server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_service():
    server = memcached_server().start()
    yield server
    server.stop()


def use_stores(settings, *, session_store, presence_store, redis, memcached, tmp_path, empty=True, **options):
    """Point the site at the given stores, as settings.py would.

    empty: start with empty caches (False keeps what the servers hold, as
    after a failover). options: more of store_settings's, e.g. redis_sync.
    """
    values = store_settings(
        session_store=session_store,
        presence_store=presence_store,
        redis_url=redis.url,
        memcached_url=memcached.url,
        state_dir=tmp_path,
        timeout=settings.STORE_TIMEOUT,
        **options,
    )
    (tmp_path / "sessions").mkdir(exist_ok=True)
    settings.REDIS_URL = redis.url
    settings.MEMCACHED_URL = memcached.url
    for name, value in values.items():
        setattr(settings, name, value)
    presence._stores.clear()
    for alias in ("sessions", "shared") if empty else ():
        caches[alias].clear()


def use_etcd(settings, members, *, presence_store, redis, memcached, tmp_path):
    """Point the site's sessions at the etcd members (an EtcdCluster), as settings.py would; return them."""
    use_stores(settings, session_store="etcd", presence_store=presence_store, redis=redis, memcached=memcached,
               tmp_path=tmp_path)
    for name, value in members.settings.items():
        setattr(settings, name, value)
    return members


@pytest.fixture
def redis_db(redis_service):
    client = redis.Redis.from_url(redis_service.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(params=SESSION_STORES)
def session_store(request, settings, redis_service, memcached_service, redis_db, tmp_path, db):
    """Run the test once per SESSION_STORE, with the presence store the registry pairs with it."""
    store = request.param
    use_stores(
        settings,
        session_store=store,
        presence_store=registry.SESSION_STORES[store].presence,
        redis=redis_service,
        memcached=memcached_service,
        tmp_path=tmp_path,
    )
    return store


@pytest.fixture
def redis_stores(settings, redis_service, memcached_service, redis_db, tmp_path, db):
    """Sessions and presence in the shared Redis."""
    use_stores(
        settings,
        session_store="redis",
        presence_store="redis",
        redis=redis_service,
        memcached=memcached_service,
        tmp_path=tmp_path,
    )


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="correct horse battery")


@pytest.fixture
def logged_in(client, user):
    assert client.login(username="ada", password="correct horse battery")
    return client


@pytest.fixture
def client_factory(django_user_model):
    """Return a function that makes a logged-in client for a new user."""

    def make(username):
        django_user_model.objects.create_user(username, password="correct horse battery")
        client = Client()
        assert client.login(username=username, password="correct horse battery")
        return client

    return make


@pytest.fixture
def csrf_client():
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def cluster(tmp_path):
    """Start clusters on demand; always bring them down and check nothing is left."""
    started = []

    def up(instances=2, sessions="redis", presence="redis", lb="roundrobin", db="sqlite", state_dir=None,
           env=None, server=web.DEFAULT, topology=()):
        """state_dir: a folder relative to the checkout, as a person would type it.
        env: site settings for every instance. server: deploy/web.py's choice.
        topology: more `up` options, e.g. ("--redis", "sentinel")."""
        state_dir = state_dir or tmp_path / f"cluster{len(started)}"
        started.append(state_dir)
        settings = [f"--env={name}={value}" for name, value in (env or {}).items()]
        return clusters.up(state_dir, "--instances", str(instances), "--sessions", sessions,
                           "--presence", presence, "--lb", lb, "--db", db, "--server", server, *settings, *topology)

    yield up
    left, folders = [], []
    for state_dir in started:
        pids = recorded_pids(ROOT / state_dir)
        data = recorded_data(ROOT / state_dir)
        deploy(state_dir, "down", check=False)
        left += [pid for pid in pids if alive(pid)]
        left += netns.namespaces(netns.prefix_for((ROOT / state_dir).resolve()))
        folders += [folder for folder in data if Path(folder).exists()]
        if not state_dir.is_absolute():
            shutil.rmtree(ROOT / state_dir, ignore_errors=True)
    assert not left, f"down left processes or namespaces: {left}"
    assert not folders, f"down left data folders: {folders}"
