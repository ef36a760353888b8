"""The shared stores the site depends on, and what happens when one fails.

Every call to Redis, memcached or the database that can fail because the
store is down goes through `store_errors`, which turns the failure into
`StoreUnavailable` naming the store. The middleware maps that to a 503.
"""

from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from redis.backoff import NoBackoff
from redis.retry import Retry


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


def no_retry():
    """A redis-py retry policy that gives up at once.

    redis-py retries failed commands three times with backoff by default,
    which turns a dead Redis into a request that hangs for seconds.
    """
    return Retry(NoBackoff(), 0)


# One pool per process: every gunicorn instance has its own connections.
@cache
def _redis_client(url, timeout):
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=no_retry(),
        health_check_interval=30,
    )


def redis_client():
    """Return this process's client for REDIS_URL."""
    return _redis_client(settings.REDIS_URL, settings.STORE_TIMEOUT)


def check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        raise StoreUnavailable("database", str(exc)) from exc
