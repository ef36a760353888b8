"""The shared stores the site depends on, and what happens when one fails.

Every call to Redis, memcached or the database that can fail because the
store is down goes through `store_errors`, which turns the failure into
`StoreUnavailable` naming the store. The middleware maps that to a 503.

`store_errors` also keeps a circuit breaker per store and process. A store
that hangs makes each call wait STORE_TIMEOUT; if every request paid that,
an instance's eight threads would serve a dozen requests a second and the
load balancer would queue the rest. So after a failure the store is not
asked again for STORE_BREAKER_INTERVAL: calls fail at once. Then one call
tries it; its success closes the breaker, its failure opens it for another
interval. A request therefore waits at most one STORE_TIMEOUT per failed
store, and the instance notices a store is back within the interval.

A sharded store (Redis Cluster) has a breaker per shard (`part`): a dead
shard must not make the live ones refuse calls.
"""

import threading
import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from labcore import connections, etcd
from labcore.connections import RedisTarget
from labcore.etcd import EtcdTarget


class StoreUnavailable(Exception):
    """A store the request needs did not answer, or answered that it could not do what was asked.

    `detail` is for the log (it may name hosts, paths, the store's own
    words); `public`, when set, is safe to show the client (e.g. how many
    replicas confirmed a write).
    """

    def __init__(self, store, detail="", public=""):
        self.store = store
        self.detail = detail
        self.public = public
        super().__init__(f"{store} is unavailable" + (f": {detail}" if detail else ""))


class Breaker:
    """One store's circuit breaker in this process: closed, or open until a moment."""

    def __init__(self, store, part=None):
        self.store = store
        self.part = part
        self._lock = threading.Lock()
        self._open_until = None  # monotonic; None while closed
        self._failure = ""

    def admit(self, interval):
        """Let a call through, or raise StoreUnavailable while the breaker is open.

        When the interval is over, the first caller goes through and the
        breaker stays open for the others, for one more interval, in case
        that call hangs too.
        """
        if self._open_until is None:
            # Closed, the usual case: one read of one attribute, atomic without the lock.
            return
        with self._lock:
            if self._open_until is None:
                return
            now = time.monotonic()
            if now < self._open_until:
                raise StoreUnavailable(
                    self.store, f"it failed {interval:g} s ago or less ({self._failure}); not asked again "
                                f"for {self._open_until - now:.2f} s")
            self._open_until = now + interval

    def succeeded(self):
        # Closed already, the usual case: nothing to write. A failure recorded
        # meanwhile stays recorded, as if this call had closed it just before.
        if self._open_until is None:
            return
        with self._lock:
            self._open_until = None

    def failed(self, failure, interval):
        with self._lock:
            self._open_until = time.monotonic() + interval
            self._failure = failure


_breakers = {}
_breakers_lock = threading.Lock()


def breaker(store, part=None):
    """Return this process's breaker for store (or for one shard of it)."""
    found = _breakers.get((store, part))  # a dict read is atomic: the lock is for making one
    if found is not None:
        return found
    with _breakers_lock:
        if (store, part) not in _breakers:
            _breakers[store, part] = Breaker(store, part)
        return _breakers[store, part]


def reset_breakers():
    """Close every breaker: the stores were replaced (the tests do that)."""
    with _breakers_lock:
        _breakers.clear()


def _refusal(exc):
    """What to tell the client when a healthy store refused the call, or None when the store failed.

    With --redis-sync the primary refuses every write (NOREPLICAS) while
    fewer replicas than required are in step: a presence heartbeat or a
    throttle counter must fail then, but the store still serves reads.
    """
    if isinstance(exc, redis.ResponseError) and str(exc).startswith("NOREPLICAS"):
        return "the primary takes no writes while fewer replicas than required are in step"
    return None


class store_errors:
    """Re-raise any failure of the block as StoreUnavailable(store), through the store's breaker.

    Exceptions in `expected` are part of the block's normal behaviour and
    pass through unchanged. While the store's breaker is open, raise
    StoreUnavailable without running the block. `part`: the shard the block
    calls, which has a breaker of its own.

    A class rather than a generator under @contextmanager: it wraps every
    store call of every request, and a generator costs a frame and an
    object more each time, for the same behaviour.
    """

    __slots__ = ("store", "expected", "part", "interval", "guard")

    def __init__(self, store, expected=(), part=None):
        self.store, self.expected, self.part = store, expected, part

    def __enter__(self):
        self.interval = settings.STORE_BREAKER_INTERVAL
        self.guard = breaker(self.store, self.part) if self.interval > 0 else None
        if self.guard:
            self.guard.admit(self.interval)

    def __exit__(self, kind, exc, traceback):
        guard = self.guard
        if kind is not None and issubclass(kind, StoreUnavailable):
            return False  # counted by the store_errors that raised it
        if kind is None or issubclass(kind, self.expected):
            # Done, or an expected exception, which passes on: either way the store answered.
            if guard:
                guard.succeeded()
            return False
        if not issubclass(kind, Exception):
            return False  # an interruption (KeyboardInterrupt, a thread's exit), no failure of the store
        failure = (f"shard {self.part}: " if self.part else "") + f"{kind.__name__}: {exc}"
        refusal = _refusal(exc)
        if refusal:
            # A healthy store said no: an answer, which fails this call and leaves the breaker closed.
            if guard:
                guard.succeeded()
            raise StoreUnavailable(self.store, failure, public=refusal) from exc
        if guard:
            guard.failed(failure, self.interval)
        raise StoreUnavailable(self.store, failure) from exc


def redis_client():
    """Return this process's client for the site's Redis (through its Sentinels, if it has them)."""
    target = getattr(settings, "REDIS_TARGET", None)
    if target is None or target.url != settings.REDIS_URL:
        target = RedisTarget(settings.REDIS_URL, settings.STORE_TIMEOUT)
    return connections.redis_client(target)


def redis_shard(key):
    """The Redis Cluster node that serves key now ("host:port"), to name its breaker; None if Redis is no cluster.

    The client's slot map answers, without a round trip; only making the
    client, once per process, asks the cluster. A failure names Redis: no
    node reachable to make the client, or a slot the map gives no node
    (redis-py raises both as RedisClusterException, which is no RedisError).
    """
    try:
        client = redis_client()
        return client.get_node_from_key(key).name if isinstance(client, RedisCluster) else None
    except (redis.RedisError, RedisClusterException) as exc:
        raise StoreUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


def etcd_client():
    """Return this process's client for the site's etcd cluster (ETCD_ENDPOINTS, with ETCD_CA's certificates)."""
    return etcd.etcd_client(EtcdTarget(settings.ETCD_ENDPOINTS, settings.STORE_TIMEOUT,
                                       settings.ETCD_CA, settings.ETCD_CERT, settings.ETCD_KEY))


def check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        raise StoreUnavailable("database", str(exc)) from exc
