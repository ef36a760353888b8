"""Django's own session tests, run against every engine of the lab with its real server.

Django's `tests/sessions_tests/tests.py`, from the source release of the
installed Django (scripts/setup.sh fetches it into .venv), is the contract
of a session engine. Each engine here gets the test class Django gives the
engine it builds on (the cache engines CacheSessionTests, `db`
DatabaseSessionTests, ...; etcd, built on SessionBase, the common mixin),
with the lab's settings for that engine and a real Redis, Redis Cluster,
memcached or etcd behind it. DECLINED lists the tests the lab declines by
design, each with the reason; they are skipped with it.
"""

import sys
import types
import unittest
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.test import SimpleTestCase, modify_settings, override_settings
from django.utils.module_loading import import_module

from deploy.cluster import server_settings
from labcore import registry
from labcore.config import store_settings
from tests.servers import EtcdCluster, one_node_redis_cluster

DJANGO_TESTS = Path(sys.prefix) / "django-tests" / django.__version__
if not (DJANGO_TESTS / "sessions_tests" / "tests.py").is_file():
    raise RuntimeError(f"Django's session tests are not in {DJANGO_TESTS}: run `bash scripts/setup.sh`, "
                       "which fetches them from Django's source release on PyPI")
sys.path.insert(0, str(DJANGO_TESTS))
# Its models module declares a model of the app `sessions_tests`; the app is
# installed only while it is imported (no table: no test here uses it).
with modify_settings(INSTALLED_APPS={"append": "sessions_tests"}):
    from sessions_tests import tests as django_tests

# Django's classes, most specific first: an engine gets the first whose backend it extends.
DJANGO_CLASSES = [django_tests.CacheDBSessionTests, django_tests.DatabaseSessionTests,
                  django_tests.FileSessionTests, django_tests.CacheSessionTests, django_tests.CookieSessionTests]

ONLY_OUR_KEYS = ("only keys Django generates (32 lowercase letters and digits) are valid: any other cookie is no "
                 "session before a store sees it (labcore/sessions/keys.py)")
SESSIONS_CACHE = "sessions live in the cache alias `sessions`, never in `default` (a LocMem cache in each process)"
FAILING_CACHE = "needs `cache.failing_cache` from Django's cache tests; a failed cache write: tests/test_outage.py"
HMAC_NAMES = "file names are HMACs of the key, so no key reaches a path; an invalid key is no session"
# The tests the lab declines by design, by the Django class that holds them, with the reason.
DECLINED = {
    django_tests.SessionTestsMixin: {
        "test_session_key_valid_string_saved": ONLY_OUR_KEYS,
    },
    django_tests.CacheDBSessionTests: {
        "test_load_overlong_key": ONLY_OUR_KEYS,
        "test_exists_searches_cache_first": "the database is the truth for exists(): a cache outage must not log "
                                            "anyone out, nor a stale cached copy keep a logged-out key alive",
        "test_non_default_cache": "the lab's sessions cache is the alias `sessions` on purpose",
        "test_cache_set_failure_non_fatal": FAILING_CACHE,
        "test_cache_async_set_failure_non_fatal": FAILING_CACHE,
    },
    django_tests.CacheSessionTests: {
        "test_load_overlong_key": ONLY_OUR_KEYS,
        "test_default_cache": SESSIONS_CACHE,
        "test_create_and_save": SESSIONS_CACHE,
        "test_create_and_save_async": SESSIONS_CACHE,
        "test_non_default_cache": SESSIONS_CACHE,
    },
    django_tests.FileSessionTests: {
        "test_invalid_key_backslash": HMAC_NAMES,
        "test_invalid_key_forwardslash": HMAC_NAMES,
        "test_configuration_check": "a missing session folder is a 503 naming the store, not ImproperlyConfigured "
                                    "at start (the folder may come back)",
        "test_clearsessions_command": "file names are HMACs, so the lab's clear_expired reads each file's expiry "
                                      "(run by maintenance), where Django's reads keys from file names",
    },
    django_tests.CookieSessionTests: {},  # no key of ours: the cookie is the session
}


def engines():
    """(name, engine module, registry row) for every engine: the registry's rows and their cluster engines."""
    for row in registry.SESSION_STORES.values():
        yield row.name, row.engine, row
        if row.cluster_engine:
            yield f"{row.name}_cluster", row.cluster_engine, row


def bind(name, engine, row):
    """A test class: Django's for the engine ours extends, with ours as its backend and the declined tests skipped."""
    ours = import_module(engine).SessionStore
    base = next((cls for cls in DJANGO_CLASSES if issubclass(ours, cls.backend)), None)
    bases = (base,) if base else (django_tests.SessionTestsMixin, SimpleTestCase)
    declines = DECLINED.get(base, DECLINED[django_tests.SessionTestsMixin])
    if base and base is not django_tests.CookieSessionTests:
        declines = {**DECLINED[django_tests.SessionTestsMixin], **declines}
    skipped = {test: unittest.skip(reason)(getattr(bases[0], test)) for test, reason in declines.items()}
    return types.new_class(f"TestDjangos{name.title().replace('_', '')}Sessions", bases, {},
                           lambda ns: ns.update(backend=ours, row=row, clustered=engine == row.cluster_engine,
                                                **skipped))


globals().update({cls.__name__: cls for cls in (bind(*engine) for engine in engines())})


@pytest.fixture(scope="module")
def etcd():
    members = EtcdCluster(1)
    yield members
    members.stop()


@pytest.fixture(scope="module")
def redis_cluster():
    with one_node_redis_cluster() as node:
        yield node


@pytest.fixture(scope="class", autouse=True)
def engine_settings(request, redis_service, memcached_service, tmp_path_factory):
    """The lab's settings for the class's engine, with its real server (the tests delete what they create)."""
    row = request.cls.row
    values = {}
    if request.cls.clustered:
        node = request.getfixturevalue("redis_cluster")
        values = {"redis_cluster_nodes": [("127.0.0.1", node["port"])]}
        redis_url = server_settings("redis", node)["REDIS_URL"]
    else:
        redis_url = redis_service.url
    state = tmp_path_factory.mktemp(row.name)
    (state / "sessions").mkdir()
    lab = store_settings(session_store=row.name, presence_store=row.presence, redis_url=redis_url,
                         memcached_url=memcached_service.url, state_dir=state, timeout=settings.STORE_TIMEOUT,
                         **values)
    if "etcd" in row.servers:
        members = request.getfixturevalue("etcd")
        lab.update(members.settings)
    with override_settings(**lab):
        yield
