"""How the site reaches its store servers: one description per kind, one client per process.

Every Redis client of the site (django-redis's caches, presence, the lease)
comes from `redis_client`, built with one set of fail-fast options, so a dead
Redis costs a request STORE_TIMEOUT and never a retry loop (etcd's clients
are in labcore/etcd.py). A server's kind (Redis) is kept apart from its
topology: `RedisTarget` describes where Redis is: one URL (credentials included), or a list of Sentinels and the name of
the service they watch, in which case the client asks them for the primary,
or the nodes of a Redis Cluster, in which case the client (redis-py's
RedisCluster) sends each key to the primary of its hash slot.
"""

import math
import re
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import redis
from django_redis.pool import ConnectionFactory
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelConnectionPoolProxy

from labcore.serializers import MemcachedJSONSerde


def no_retry():
    """A redis-py retry policy that gives up at once.

    redis-py retries failed commands three times with backoff by default,
    which turns a dead Redis into a request that hangs for seconds.
    """
    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, and how long a call may wait for it.

    With `sentinels` ((host, port) pairs) and `service`, the URL gives only
    the database number (and credentials); the primary is whichever node the
    Sentinels name now. With `cluster_nodes` ((host, port) pairs), Redis is
    a cluster and these are where the client first asks for its slot map.
    `sync` is how many replicas must confirm a session write (WAIT) within
    `sync_timeout` seconds; 0 does not wait. ValueError, naming the settings,
    for a `sync` the client could not keep (see `check_sync`).
    """

    url: str
    timeout: float
    sentinels: tuple = ()
    service: str = ""
    password: str = ""  # for the Sentinels themselves (their auth-pass), when they have one
    sync: int = 0
    sync_timeout: float = 0.25
    cluster_nodes: tuple = ()
    # How long the Sentinels' answer (which node is primary) is trusted: see PrimaryCache.
    primary_cache: str = "500"

    def __post_init__(self):
        check_sync(self)


def check_sync(target):
    """Refuse a WAIT the client would give up on, and a WAIT nobody sends.

    WAIT answers after at most its timeout, and the answer must still come
    back inside the socket timeout: a WAIT as long as the socket's makes the
    client give up first, and a healthy Redis that answered "not enough
    replicas" is then counted as a timeout, which opens the breaker for
    every reader of the process. So the WAIT gets at most half of
    STORE_TIMEOUT, the other half being the round trip's margin on a busy
    machine.
    """
    if not target.sync:
        return
    if target.sync < 0:
        raise ValueError(f"REDIS_SYNC must be 0 or more replicas, not {target.sync}")
    if not 0 < target.sync_timeout <= target.timeout / 2:
        raise ValueError(f"REDIS_SYNC_TIMEOUT ({target.sync_timeout:g} s) must be more than 0 and at most half "
                         f"of STORE_TIMEOUT ({target.timeout:g} s), so that WAIT answers before the socket "
                         f"gives up")


def parse_addresses(text):
    """("host:port,host:port") -> ((host, port), ...): Sentinels, or Redis Cluster nodes."""
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            host, _, port = item.rpartition(":")
            pairs.append((host or "127.0.0.1", int(port)))
    return tuple(pairs)


def with_password(url, password):
    """url with password as its password, so a password from a Secret joins a URL from a ConfigMap.

    Only characters a URL carries as they are: the Sentinel and Cluster
    clients read the password from the URL without unquoting it.
    """
    if not re.fullmatch(r"[A-Za-z0-9._~-]+", password):
        raise ValueError("REDIS_PASSWORD may hold only letters, digits and . _ ~ - "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"))


# One pool per process and target: every gunicorn instance has its own connections.
@cache
def redis_client(target):
    """Return this process's client for target."""
    options = {"socket_timeout": target.timeout, "socket_connect_timeout": target.timeout,
               "retry": no_retry(), "health_check_interval": 30}
    if target.cluster_nodes:
        return _cluster_client(target, options)
    if not target.sentinels:
        return redis.Redis.from_url(target.url, **options)
    return _sentinel_client(target, options)


def _cluster_client(target, options):
    """A Redis Cluster client: each key goes to the primary of its slot.

    redis-py's RedisCluster asks a node for the slot map when it starts and
    again after a call to a node fails (or a node answers MOVED), so once a
    replica has taken over its dead primary's slots, the next call after a
    failure finds it. A call that meets the dead primary before that fails
    at once, as with a single Redis: no retries. It starts even while some
    slots have no primary (require_full_coverage off): the other shards serve.
    """
    parts = urlsplit(target.url)
    options = {key: value for key, value in options.items() if key != "health_check_interval"}
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.cluster_nodes],
                        password=parts.password, username=parts.username, require_full_coverage=False,
                        **options)


def parse_primary_cache(text):
    """REDIS_PRIMARY_CACHE -> seconds the primary's address is trusted: inf (forever), None (per connection).

    ValueError naming the setting for anything else than `forever`, `connection` or milliseconds.
    """
    if text == "forever":
        return math.inf
    if text == "connection":
        return None
    try:
        milliseconds = float(text)
    except ValueError:
        milliseconds = -1
    if not 0 <= milliseconds < math.inf:
        raise ValueError(f"REDIS_PRIMARY_CACHE must be forever, connection or milliseconds (0 or more), not {text!r}")
    return milliseconds / 1000


class PrimaryCache(SentinelConnectionPoolProxy):
    """redis-py's answer to "which node is primary", kept for at most `max_age` seconds.

    redis-py asks the Sentinels only when a connection opens, and a pooled
    connection stays with the node it opened on. A primary cut off from the
    Sentinels but not from this instance goes on acknowledging writes on
    those connections after a replica was promoted, writes that the heal
    throws away (docs/experiments/fate.md, "A cached fact outliving its owner"). So with a
    finite `max_age` the pool asks again when it hands out a connection and
    the answer is older than that; a changed answer closes the idle
    connections to the old node, and one in use is dropped when released.
    A Sentinel that cannot be asked fails the call (a 503 naming Redis):
    nothing is written to a node nobody could confirm is the primary.
    `max_age` inf asks once per process and keeps that node forever (the
    lesson's broken configuration); None keeps redis-py's behaviour.
    """

    def __init__(self, *args, max_age, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_age = max_age
        self.asked_at = -math.inf

    def get_master_address(self):
        if self.max_age == math.inf and self.master_address is not None:
            return self.master_address
        address = super().get_master_address()
        self.asked_at = time.monotonic()
        return address

    def stale(self):
        return self.max_age is not None and time.monotonic() - self.asked_at >= self.max_age


class PrimaryPool(SentinelConnectionPool):
    """A Sentinel pool whose answer about the primary is a `PrimaryCache`."""

    def __init__(self, service_name, sentinel_manager, *, max_age, **kwargs):
        super().__init__(service_name, sentinel_manager, **kwargs)
        # redis-py builds its own proxy in __init__ and hands it to every connection: replace both.
        self.proxy = PrimaryCache(connection_pool=self, is_master=True, check_connection=self.check_connection,
                                  service_name=service_name, sentinel_manager=sentinel_manager, max_age=max_age)
        self.connection_kwargs["connection_pool"] = self.proxy

    def get_connection(self, *args, **kwargs):
        if self.proxy.stale():
            self.proxy.get_master_address()
        return super().get_connection(*args, **kwargs)


def _sentinel_client(target, options):
    """A client whose pool asks the Sentinels for the primary (see PrimaryCache for how often).

    A connection that meets a demoted primary (a READONLY error) is closed
    and fails that one call, and a call that meets the dead primary before
    Sentinel has promoted another fails at once (connection refused), as a
    single Redis would.
    """
    parts = urlsplit(target.url)
    db = int(parts.path.strip("/") or 0)
    sentinel_options = {"socket_timeout": target.timeout, "socket_connect_timeout": target.timeout,
                        "retry": no_retry()}
    if target.password:
        sentinel_options["password"] = target.password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(target.service, connection_pool_class=PrimaryPool,
                               max_age=parse_primary_cache(target.primary_cache), db=db, password=parts.password,
                               username=parts.username, **options)


class SharedConnectionFactory(ConnectionFactory):
    """django-redis's connection factory, answering with `redis_client`.

    So the caches share the pool and the options of every other Redis user
    in the process instead of building their own.
    """

    def connect(self, url):
        return redis_client(self.options.get("REDIS_TARGET") or RedisTarget(url, self.options["STORE_TIMEOUT"]))

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
                    "STORE_TIMEOUT": target.timeout, "REDIS_TARGET": target},
    }


def stock_redis_cache(target):
    """Django's built-in Redis cache as its documentation sets it up: its own pool, for comparison only.

    JSON values, as in every cache of the lab (a pickle read from a shared
    store runs whatever was written there), and the lab's socket timeout,
    so a dead Redis cannot hang a benchmark.
    """
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": target.url,
        "OPTIONS": {"serializer": "labcore.clustercache.JSONSerializer", "socket_timeout": target.timeout,
                    "socket_connect_timeout": target.timeout},
    }


def stock_django_redis_cache(target):
    """django-redis as its documentation sets it up: its own pool, its JSON serializer; for comparison only."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": target.url,
        "OPTIONS": {"SERIALIZER": "django_redis.serializers.json.JSONSerializer",
                    "SOCKET_TIMEOUT": target.timeout, "SOCKET_CONNECT_TIMEOUT": target.timeout},
    }


def redis_cluster_cache(target):
    """A Django cache on Redis Cluster: Django's own Redis cache, with a cluster client (labcore/clustercache.py)."""
    return {
        "BACKEND": "labcore.clustercache.RedisClusterCache",
        "LOCATION": target.url,
        "OPTIONS": {"target": target},
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
