"""Turn the lab's two switches, SESSION_STORE and PRESENCE_STORE, into Django settings.

A pure function of its arguments, so the tests switch stores the same way
settings.py does. Everything it knows about a store comes from the registry.
"""

from urllib.parse import urlsplit

from channels_redis.core import RedisChannelLayer

from labcore import registry
from labcore.connections import (
    RedisTarget,
    memcached_cache,
    memory_cache,
    redis_cache,
    redis_cluster_cache,
    stock_django_redis_cache,
    stock_redis_cache,
)


def store_settings(*, session_store, presence_store, redis_url, memcached_url, state_dir, timeout,
                   session_engine=None, redis_sentinels=(), redis_service="", redis_sentinel_password="",
                   redis_sync=0, redis_sync_timeout=None, redis_cluster_nodes=(),
                   redis_primary_cache="500"):
    """Return the settings that put sessions and presence where asked.

    `session_engine`, a dotted path, wins over `session_store` for people who
    toggle Django's own SESSION_ENGINE. `redis_sentinels` ((host, port)
    pairs) and `redis_service` reach Redis through Sentinel (which asks
    for `redis_sentinel_password`, if it has one); `redis_sync`
    replicas must confirm each session write within `redis_sync_timeout`
    (half of `timeout` unless given; ConfigError if longer).
    `redis_primary_cache` is how long the Sentinels' answer is trusted.
    `redis_cluster_nodes` ((host, port) pairs) make Redis a cluster: one
    switch for every Redis user (sessions, counters, presence, the lease).
    """
    try:
        redis_target = RedisTarget(redis_url, timeout, sentinels=tuple(redis_sentinels), service=redis_service,
                                   password=redis_sentinel_password, sync=redis_sync,
                                   sync_timeout=timeout / 2 if redis_sync_timeout is None else redis_sync_timeout,
                                   cluster_nodes=tuple(redis_cluster_nodes), primary_cache=redis_primary_cache)
    except ValueError as exc:
        raise registry.ConfigError(str(exc)) from None
    if session_engine:
        # A raw engine of Django's is named in the lab's words, for the status bar.
        session = registry.session_store_of_engine(session_engine) or registry.SessionStore(
            session_engine.rsplit(".", 1)[-1], session_engine)
    else:
        session = registry.session_store(session_store)
        if session.comparison and (redis_target.sentinels or redis_target.cluster_nodes):
            raise registry.ConfigError(f"SESSION_STORE={session.name} is for comparison on one Redis: "
                                       f"not under Sentinel or in a cluster")
    presence = registry.presence_store(presence_store)
    servers = registry.servers_of(session, presence)
    caches = {
        registry.MEMORY: memory_cache,
        "redis": lambda name: (redis_cluster_cache if redis_target.cluster_nodes else redis_cache)(redis_target),
        "memcached": lambda name: memcached_cache(memcached_url, timeout),
        "redis_stock": lambda name: stock_redis_cache(redis_target),
        "django_redis_stock": lambda name: stock_django_redis_cache(redis_target),
    }
    shared = registry.shared_cache_kind(servers)
    return {
        "SESSION_STORE": session.name,
        "SESSION_ENGINE": (redis_target.cluster_nodes and session.cluster_engine) or session.engine,
        "SESSION_CACHE_ALIAS": "sessions",
        "SESSION_FILE_PATH": str(state_dir / "sessions"),
        "PRESENCE_STORE": presence.name,
        "PRESENCE_BACKEND": presence.backend,
        "CACHES": {
            "default": memory_cache("default"),
            "sessions": caches[session.cache]("sessions"),
            # Counters (failed logins) in the fast shared store, per process when there is none.
            "shared": caches[shared]("shared"),
        },
        "SHARED_STORE": shared,
        "REDIS_TARGET": redis_target,
        "SERVERS": servers,
    }


CHANNEL_LAYERS = ("memory", "redis")


def channel_layer_settings(kind, *, presence_store, redis_target, socket_expiry):
    """Return CHANNEL_LAYER and CHANNEL_LAYERS for Django Channels (the chat's WebSocket, chat/consumers.py).

    `kind` is `memory` (each process reaches only its own sockets), `redis`
    (every instance's, through the same Redis, or Sentinel, as the site's
    other Redis users) or empty: `redis` when presence is in a Redis that
    is no cluster, `memory` otherwise. `socket_expiry` (seconds) is how
    long a socket's group membership lasts without a refresh
    (channels-redis's default is a day; chat/consumers.py refreshes it).
    ConfigError for another kind, and for `redis` on Redis Cluster, which
    channels-redis cannot use.
    """
    in_redis = registry.presence_store(presence_store).name == "redis" and not redis_target.cluster_nodes
    kind = kind or ("redis" if in_redis else "memory")
    if kind not in CHANNEL_LAYERS:
        raise registry.ConfigError(f"CHANNEL_LAYER must be one of {', '.join(CHANNEL_LAYERS)}, not {kind!r}")
    if kind == "memory":
        return {"CHANNEL_LAYER": kind, "CHANNEL_LAYERS": {"default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"group_expiry": socket_expiry}}}}
    if redis_target.cluster_nodes:
        raise registry.ConfigError("CHANNEL_LAYER=redis cannot use Redis Cluster (REDIS_CLUSTER_NODES): "
                                   "channels-redis speaks to one Redis or to Sentinel; use CHANNEL_LAYER=memory, "
                                   "or a Redis without cluster")
    return {"CHANNEL_LAYER": kind, "CHANNEL_LAYERS": {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_layer_host(redis_target)], "group_expiry": socket_expiry}}}}


# Connections the channel layer's pool may open in one instance. redis-py's asyncio pool opens at most 100
# and refuses the next call at once (MaxConnectionsError, no waiting): with thousands of sockets joining,
# leaving and refreshing their group at once, handshakes were closed 4503 (bench-sockets, 5,000 sockets).
# Each is one open file of the instance (deploy/web.py: SOCKET_FILES) and one of Redis's clients (10,000 by
# default, where Redis may raise its own open-file limit that far: a lower hard limit lowers it).
LAYER_CONNECTIONS = 1000


def redis_layer_host(target):
    """channels-redis's description of the Redis in target: its URL, or its Sentinels and service."""
    # The layer's receive blocks on Redis (BZPOPMIN) for its brpop_timeout by design: a read may take
    # that long plus the usual STORE_TIMEOUT (redis-py's own default, 5 s, races with it).
    options = {"socket_connect_timeout": target.timeout,
               "socket_timeout": RedisChannelLayer.brpop_timeout + target.timeout,
               "max_connections": LAYER_CONNECTIONS}
    if not target.sentinels:
        return {"address": target.url, **options}
    parts = urlsplit(target.url)
    sentinel_options = {"password": target.password} if target.password else {}
    return {"sentinels": list(target.sentinels), "master_name": target.service, "sentinel_kwargs": sentinel_options,
            "db": int(parts.path.strip("/") or 0), "password": parts.password, "username": parts.username,
            **options}
