"""How the site reaches its store servers: one description per kind, one client per process.

Every Redis client of the site (django-redis's caches, presence, the lease)
comes from `redis_client`, and every etcd client from `etcd_client`, built with one set of fail-fast options, so a dead
Redis costs a request STORE_TIMEOUT and never a retry loop. A server's kind
(Redis) is kept apart from its topology: `RedisTarget` describes where Redis
is, today one URL (credentials included), and is the one place that learns
about Sentinels or cluster nodes.
"""

import threading
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import etcd3gw
import etcd3gw.exceptions
import redis
from django_redis.pool import ConnectionFactory
from redis.backoff import NoBackoff
from redis.retry import Retry

from labcore.serializers import MemcachedJSONSerde


def no_retry():
    """A redis-py retry policy that gives up at once.

    redis-py retries failed commands three times with backoff by default,
    which turns a dead Redis into a request that hangs for seconds.
    """
    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, and how long a call may wait for it."""

    url: str
    timeout: float


# One pool per process and target: every gunicorn instance has its own connections.
@cache
def redis_client(target):
    """Return this process's client for target."""
    return redis.Redis.from_url(
        target.url,
        socket_timeout=target.timeout,
        socket_connect_timeout=target.timeout,
        retry=no_retry(),
        health_check_interval=30,
    )


class SharedConnectionFactory(ConnectionFactory):
    """django-redis's connection factory, answering with `redis_client`.

    So the caches share the pool and the options of every other Redis user
    in the process instead of building their own.
    """

    def connect(self, url):
        return redis_client(RedisTarget(url, self.options["STORE_TIMEOUT"]))

    def disconnect(self, connection):
        # The pool is shared with presence and the lease: leave it open.
        pass


def redis_cache(target):
    """A Django cache on Redis, through django-redis."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": target.url,
        "OPTIONS": {"CONNECTION_FACTORY": "labcore.connections.SharedConnectionFactory",
                    "SERIALIZER": "labcore.serializers.RedisJSONSerializer",
                    "STORE_TIMEOUT": target.timeout},
    }


def memcached_location(url):
    """Django's LOCATION for a MEMCACHED_URL: `unix:/path` (a socket) or `memcached://host:port`."""
    if url.startswith("unix:"):
        return url
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 11211}"


def memcached_cache(url, timeout):
    """A Django cache on memcached, through pymemcache."""
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": memcached_location(url),
        "OPTIONS": {
            "serde": MemcachedJSONSerde(),
            "connect_timeout": timeout,
            "timeout": timeout,
            # pymemcache's HashClient answers "not found" while it waits to
            # retry a failed server, which Django reads as "no session": a
            # silent logout. With one server there is nothing to fail over
            # to, so raise on every failure and try the server every time.
            "retry_attempts": 0,
            "dead_timeout": 0,
        },
    }


def memory_cache(name):
    """A Django cache inside this process."""
    # LocMem pickles its values, but only within this process's memory: it
    # never reads a byte from outside the process, so nothing planted from
    # outside can reach its unpickler.
    # LocMem forgets a third of its entries once it holds MAX_ENTRIES (300 by
    # default): that would log users out with no instance dying.
    return {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": name,
        "OPTIONS": {"MAX_ENTRIES": 10_000_000},
    }


@dataclass(frozen=True)
class EtcdTarget:
    """Where an etcd cluster's members answer ((host, port) pairs), and how long a call may wait."""

    endpoints: tuple
    timeout: float


class EtcdClient:
    """etcd's JSON gateway, through etcd3gw, over several members.

    etcd3gw talks to one member; a cluster has several, any of which can
    serve a request (a follower forwards it to the leader). A member that
    refuses the connection is skipped at once for the next; one that does
    not answer in time fails the call, and the next call starts with
    another member, so a call waits at most the timeout.
    """

    def __init__(self, target):
        self._members = [etcd3gw.client(host=host, port=port, timeout=target.timeout)
                         for host, port in target.endpoints]
        self._first = 0  # the member that answered last
        self._lock = threading.Lock()

    def call(self, operation):
        """Return operation(member's client) from the first member that takes the connection."""
        with self._lock:
            first = self._first
        count = len(self._members)
        for offset in range(count):
            index = (first + offset) % count
            try:
                result = operation(self._members[index])
            except etcd3gw.exceptions.ConnectionFailedError:
                continue
            except etcd3gw.exceptions.ConnectionTimeoutError:
                with self._lock:
                    self._first = (index + 1) % count
                raise
            with self._lock:
                self._first = index
            return result
        raise etcd3gw.exceptions.ConnectionFailedError(f"none of the {count} etcd members took the connection")


@cache
def etcd_client(target):
    """Return this process's client for the etcd cluster at target."""
    return EtcdClient(target)
