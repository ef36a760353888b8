"""Every place the lab can keep state: one row per store, read by everyone who must know.

Settings (which engine, which caches), `deploy` (which servers to start),
/readyz (what must answer), the load test's and the benchmarks' defaults and
the tests' parametrisation all read these tables, so adding a store is one
row here plus one engine module (plus, for a new kind of server, one module
in deploy/kinds/, its row in KINDS and a slot range in deploy/layout.py).

A server's kind (redis, memcached, postgres) is not its topology: Redis
alone, under Sentinel or as a cluster is one kind, chosen by a deploy
option, never a store of its own.
"""

from dataclasses import dataclass

MEMORY = "memory"  # a cache inside the process: no server


@dataclass(frozen=True)
class SessionStore:
    """Where logins live."""

    name: str
    # A module with a SessionStore class, as Django's SESSION_ENGINE; and a
    # check() if /readyz must fail while the store does not answer.
    engine: str
    # The engine when Redis is a cluster (REDIS_CLUSTER_NODES), if the usual one cannot speak to one.
    cluster_engine: str = ""
    servers: tuple = ()  # kinds of server it needs besides the database
    cache: str = MEMORY  # the kind of its Django cache, "sessions": memory, redis or memcached
    presence: str = "redis"  # the presence store that goes with it by default
    revokes_at_logout: bool = True  # a copied cookie is dead after logout
    survives_instance_death: bool = True
    # The kill experiment's default matrix runs the store behind each of
    # these load balancings (none: only when named); its quick matrix behind
    # `quick_experiment`, if set.
    experiment: tuple = ("roundrobin",)
    quick_experiment: str = ""
    # `bench`'s target for the store: through HAProxy, at least this fraction
    # of the first store's (memory's) poll mix throughput in every round (0: none).
    bench_target: float = 0.0
    # Django's own engine on a stock cache, only for the benchmark to compare
    # ours with: none of the lab's guarantees (a store outage reads as an
    # empty session, a silent logout; no breaker, no REDIS_SYNC, one Redis
    # only). Such a row is in COMPARISON_SESSION_STORES, never in
    # SESSION_STORES, which the tests, experiments and deploy's --sessions
    # iterate; SESSION_STORE selects it all the same.
    comparison: bool = False
    summary: str = ""


@dataclass(frozen=True)
class PresenceStore:
    """Where "who is online" lives."""

    name: str
    backend: str  # a chat.presence class, by dotted path
    servers: tuple = ()
    per_instance: bool = False  # each instance sees only the heartbeats that reached it
    summary: str = ""


@dataclass(frozen=True)
class Database:
    """Where hard state (accounts, messages) lives."""

    name: str
    servers: tuple = ()
    summary: str = ""


SESSION_STORES = {}
COMPARISON_SESSION_STORES = {}
PRESENCE_STORES = {}
DATABASES = {}
_TABLES = {SessionStore: SESSION_STORES, PresenceStore: PRESENCE_STORES, Database: DATABASES}


def register(row):
    """Add a row to its table (the built-in rows below, or a test's own)."""
    table = COMPARISON_SESSION_STORES if getattr(row, "comparison", False) else _TABLES[type(row)]
    table[row.name] = row
    return row


for _row in (
    SessionStore("memory", "labcore.sessions.cache", presence="memory", survives_instance_death=False,
                 experiment=("roundrobin", "sticky"), quick_experiment="sticky",
                 summary="LocMem cache inside the process: lost when it dies, invisible to the others"),
    SessionStore("file", "labcore.sessions.file", experiment=(), summary="one file per session in the state folder"),
    SessionStore("db", "labcore.sessions.db", summary="the database"),
    SessionStore("cached_db", "labcore.sessions.cached_db", servers=("redis",), cache="redis",
                 quick_experiment="roundrobin", bench_target=0.85,
                 summary="the database, with Redis in front; a dead Redis costs speed and session writes, not logins"),
    SessionStore("redis", "labcore.sessions.redis", servers=("redis",), cache="redis",
                 cluster_engine="labcore.sessions.rediscluster", quick_experiment="roundrobin", bench_target=0.9,
                 summary="Redis, through django-redis (Redis Cluster: Django's Redis cache, sharded)"),
    SessionStore("memcached", "labcore.sessions.memcached", servers=("memcached",), cache="memcached",
                 summary="memcached, through pymemcache"),
    SessionStore("etcd", "labcore.sessions.etcd", servers=("etcd",), experiment=(),
                 summary="etcd, a majority store: every write on a majority of its members (Raft)"),
    SessionStore("signed_cookies", "labcore.sessions.signed_cookies", revokes_at_logout=False,
                 summary="the state rides in the cookie: nothing to lose, nothing to revoke"),
    SessionStore("stock_cache_redis", "django.contrib.sessions.backends.cache", servers=("redis",),
                 cache="redis_stock", comparison=True, experiment=(),
                 summary="comparison only: Django's cache engine on Django's built-in RedisCache"),
    SessionStore("stock_cache_django_redis", "django.contrib.sessions.backends.cache", servers=("redis",),
                 cache="django_redis_stock", comparison=True, experiment=(),
                 summary="comparison only: Django's cache engine on django-redis"),
    SessionStore("stock_cached_db", "django.contrib.sessions.backends.cached_db", servers=("redis",),
                 cache="redis_stock", comparison=True, experiment=(),
                 summary="comparison only: Django's cached_db engine, with Django's built-in RedisCache in front"),
    PresenceStore("memory", "chat.presence.memory.MemoryPresence", per_instance=True,
                  summary="a dict in the process: each instance sees its own heartbeats"),
    PresenceStore("redis", "chat.presence.redis.RedisPresence", servers=("redis",),
                  summary="one sorted set per room, shared"),
    Database("sqlite", summary="SQLite in WAL mode, in the state folder"),
    Database("postgres", servers=("postgres",), summary="a private PostgreSQL server"),
):
    register(_row)


class ConfigError(ValueError):
    pass


def _lookup(table, name, what):
    if name not in table:
        raise ConfigError(f"{what}={name!r} is not one of: {', '.join(table)}")
    return table[name]


def session_store(name):
    return _lookup({**SESSION_STORES, **COMPARISON_SESSION_STORES}, name, "SESSION_STORE")


def presence_store(name):
    return _lookup(PRESENCE_STORES, name, "PRESENCE_STORE")


def database(name):
    return _lookup(DATABASES, name, "database")


def session_store_of_engine(engine):
    """The row whose engine is this dotted path, or None (a raw SESSION_ENGINE of Django's)."""
    return next((row for row in SESSION_STORES.values() if row.engine == engine), None)


def servers_of(*rows):
    """The kinds of server these rows need, each once, in order."""
    needed = []
    for row in rows:
        needed += [kind for kind in row.servers if kind not in needed]
    return needed


def servers_needed(*, sessions, presence, database_name):
    """The kinds of server a configuration needs, by the names of its stores and database."""
    return servers_of(session_store(sessions), presence_store(presence), database(database_name))


def shared_cache_kind(servers):
    """The fast shared store for counters: Redis if the configuration has it, else memcached, else none."""
    return next((kind for kind in ("redis", "memcached") if kind in servers), MEMORY)
