"""How the site reaches its store servers: one description per kind, one client per process.

Every Redis client of the site (django-redis's caches, presence, the lease)
comes from `redis_client`, and every etcd client from `etcd_client`, built with one set of fail-fast options, so a dead
Redis costs a request STORE_TIMEOUT and never a retry loop. A server's kind
(Redis) is kept apart from its topology: `RedisTarget` describes where Redis
is: one URL (credentials included), or a list of Sentinels and the name of
the service they watch, in which case the client asks them for the primary,
or the nodes of a Redis Cluster, in which case the client (redis-py's
RedisCluster) sends each key to the primary of its hash slot.
"""

import math
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote, urlsplit, urlunsplit

import etcd3gw
import etcd3gw.exceptions
import redis
import requests
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
    machine. Redis Cluster sessions are not WAITed for (a WAIT would have
    to follow each write on its shard's own connection), so REDIS_SYNC
    there would promise what nothing keeps.
    """
    if not target.sync:
        return
    if target.sync < 0:
        raise ValueError(f"REDIS_SYNC must be 0 or more replicas, not {target.sync}")
    if target.cluster_nodes:
        raise ValueError("REDIS_SYNC is for a single Redis or Sentinel; Redis Cluster sessions are not "
                         "WAITed for: leave REDIS_SYNC at 0 with REDIS_CLUSTER_NODES")
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


@dataclass(frozen=True)
class EtcdTarget:
    """Where an etcd cluster's members answer ((host, port) pairs), how long a call may wait, and as whom.

    With a `user`, the members ask for a login (etcd's authentication):
    every call carries the token that `user` and `password` got.
    """

    endpoints: tuple
    timeout: float
    user: str = ""
    password: str = field(default="", repr=False)


def parse_etcd_endpoints(text):
    """ETCD_ENDPOINTS ("[user:password@]host:port,...") -> ((host, port), ...), user, password.

    The credentials ride with each member's address, as Redis's ride in its
    URL; every member must carry the same ones. ValueError naming the
    setting otherwise.
    """
    endpoints, credentials = [], set()
    for item in (part.strip() for part in text.split(",")):
        if item:
            parts = urlsplit(f"//{item}")
            endpoints.append((parts.hostname or "127.0.0.1", parts.port or 2379))
            credentials.add((unquote(parts.username or ""), unquote(parts.password or "")))
    if len(credentials) > 1:
        raise ValueError("ETCD_ENDPOINTS gives its members different credentials: give each the same user:password@")
    user, password = credentials.pop() if credentials else ("", "")
    return tuple(endpoints), user, password


class EtcdLogin:
    """A user's token for an etcd cluster with authentication on, shared by the clients of its members.

    etcd's gateway takes the token `/v3/auth/authenticate` gives in the
    Authorization header. A login goes through Raft, so its token is good
    on every member, until that member forgets it: unused for
    --auth-token-ttl, or restarted. A call refused for its token (401)
    logs in again and is sent once more.
    """

    def __init__(self, user, password):
        self._user, self._password = user, password
        self._token = None
        self._lock = threading.Lock()

    def token(self, session, url, timeout, *, refused=None):
        """The token to send to the member at url; a new one if there is none yet or it was `refused`."""
        with self._lock:
            if self._token is None or self._token == refused:
                self._token = self._log_in(session, url, timeout)
            return self._token

    def _log_in(self, session, url, timeout):
        parts = urlsplit(url)
        answer = requests.Session.request(session, "POST", f"{parts.scheme}://{parts.netloc}/v3/auth/authenticate",
                                          json={"name": self._user, "password": self._password}, timeout=timeout)
        if answer.status_code != requests.codes.ok:
            raise etcd3gw.exceptions.Etcd3Exception(answer.text, answer.reason)
        return answer.json()["token"]


class LoggedInSession(requests.Session):
    """The HTTP session of one member's etcd3gw client: every request carries the login's token."""

    def __init__(self, login):
        super().__init__()
        self._login = login

    def request(self, method, url, *args, timeout=None, headers=None, **kwargs):
        token = self._login.token(self, url, timeout)
        for _ in range(2):
            answer = super().request(method, url, *args, timeout=timeout,
                                     headers={**(headers or {}), "Authorization": token}, **kwargs)
            if answer.status_code != requests.codes.unauthorized:
                break
            token = self._login.token(self, url, timeout, refused=token)
        return answer


def etcd_member(host, port, timeout, login=None):
    """An etcd3gw client of one member: logged in with `login` (an EtcdLogin), if given."""
    return etcd3gw.client(host=host, port=port, timeout=timeout, session=LoggedInSession(login) if login else None)


class EtcdClient:
    """etcd's JSON gateway, through etcd3gw, over several members.

    etcd3gw talks to one member; a cluster has several, any of which can
    serve a request (a follower forwards it to the leader). A member that
    refuses the connection is skipped at once for the next; one that does
    not answer in time fails the call, and the next call starts with
    another member, so a call waits at most the timeout.
    """

    def __init__(self, target):
        login = EtcdLogin(target.user, target.password) if target.user else None
        self._members = [etcd_member(host, port, target.timeout, login) for host, port in target.endpoints]
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
