"""The shared stores the site depends on, and what happens when one fails.

Every call to Redis, memcached or the database that can fail because the
store is down goes through `store_errors`, which turns the failure into
`StoreUnavailable` naming the store. The middleware maps that to a 503.
"""

from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection

from labcore import connections
from labcore.connections import EtcdTarget, RedisTarget


class StoreUnavailable(Exception):
    """A store the request needs did not answer."""

    def __init__(self, store, detail=""):
        self.store = store
        self.detail = detail
        super().__init__(f"{store} is unavailable" + (f": {detail}" if detail else ""))


@contextmanager
def store_errors(store, expected=()):
    """Re-raise any failure of the block as StoreUnavailable(store).

    Exceptions in `expected` are part of the block's normal behaviour and
    pass through unchanged.
    """
    try:
        yield
    except (StoreUnavailable, *expected):
        raise
    except Exception as exc:
        raise StoreUnavailable(store, f"{type(exc).__name__}: {exc}") from exc


def redis_client():
    """Return this process's client for the site's Redis (through its Sentinels, if it has them)."""
    target = getattr(settings, "REDIS_TARGET", None)
    if target is None or target.url != settings.REDIS_URL:
        target = RedisTarget(settings.REDIS_URL, settings.STORE_TIMEOUT)
    return connections.redis_client(target)


def etcd_client():
    """Return this process's client for the site's etcd cluster (ETCD_ENDPOINTS)."""
    return connections.etcd_client(EtcdTarget(settings.ETCD_ENDPOINTS, settings.STORE_TIMEOUT))


def check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        raise StoreUnavailable("database", str(exc)) from exc
