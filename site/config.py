"""Map the lab's store names onto Django settings.

`SESSION_STORE` and `PRESENCE_STORE` are the two switches of the lab. This
module turns them into SESSION_ENGINE and CACHES, and is a pure function of
its arguments so the tests can switch stores the same way settings.py does.
"""

from urllib.parse import urlsplit

from redis.backoff import NoBackoff
from redis.retry import Retry

SESSION_ENGINES = {
    # State inside one process: lost when it dies, invisible to the others.
    "memory": "labsite.sessions.cache",
    "file": "labsite.sessions.file",
    "db": "labsite.sessions.db",
    "cached_db": "labsite.sessions.cached_db",
    "redis": "labsite.sessions.redis",
    "memcached": "labsite.sessions.cache",
    # State carried by the client: nothing to lose, nothing to revoke.
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}

PRESENCE_STORES = {
    "memory": "chat.presence.memory.MemoryPresence",
    "redis": "chat.presence.redis.RedisPresence",
}


class ConfigError(ValueError):
    pass


def redis_cache(url, timeout):
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": timeout,
            "SOCKET_TIMEOUT": timeout,
            # redis-py retries three times with backoff by default: a dead
            # Redis would hang each request for seconds instead of failing.
            "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
        },
    }


def memcached_cache(url, timeout):
    parts = urlsplit(url)
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": f"{parts.hostname}:{parts.port or 11211}",
        "OPTIONS": {
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
    # LocMem forgets a third of its entries once it holds MAX_ENTRIES (300 by
    # default): that would log users out with no instance dying.
    return {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": name,
        "OPTIONS": {"MAX_ENTRIES": 10_000_000},
    }


def store_settings(
    *,
    session_store,
    presence_store,
    redis_url,
    memcached_url,
    state_dir,
    timeout,
    session_engine=None,
):
    """Return the settings that put sessions and presence where asked.

    `session_engine`, a dotted path, wins over `session_store` for people who
    toggle Django's own SESSION_ENGINE.
    """
    if session_engine:
        session_store = _store_of_engine(session_engine)
    elif session_store in SESSION_ENGINES:
        session_engine = SESSION_ENGINES[session_store]
    else:
        raise ConfigError(
            f"SESSION_STORE={session_store!r} is not one of: {', '.join(SESSION_ENGINES)}"
        )
    if presence_store not in PRESENCE_STORES:
        raise ConfigError(
            f"PRESENCE_STORE={presence_store!r} is not one of: {', '.join(PRESENCE_STORES)}"
        )

    session_cache = {
        "redis": lambda: redis_cache(redis_url, timeout),
        "cached_db": lambda: redis_cache(redis_url, timeout),
        "memcached": lambda: memcached_cache(memcached_url, timeout),
    }.get(session_store, lambda: memory_cache("sessions"))()

    uses_redis = "redis" in (session_store, presence_store) or session_store == "cached_db"
    if uses_redis:
        shared_cache = redis_cache(redis_url, timeout)
    elif session_store == "memcached":
        shared_cache = memcached_cache(memcached_url, timeout)
    else:
        # No shared fast store in this configuration: counters stay per process.
        shared_cache = memory_cache("shared")

    return {
        "SESSION_STORE": session_store,
        "SESSION_ENGINE": session_engine,
        "SESSION_CACHE_ALIAS": "sessions",
        "SESSION_FILE_PATH": str(state_dir / "sessions"),
        "PRESENCE_STORE": presence_store,
        "PRESENCE_BACKEND": PRESENCE_STORES[presence_store],
        "CACHES": {
            "default": memory_cache("default"),
            "sessions": session_cache,
            "shared": shared_cache,
        },
        "SHARED_STORE": _cache_kind(shared_cache),
    }


def _store_of_engine(engine):
    """Name a raw SESSION_ENGINE in the lab's words, for the status bar."""
    for name, path in SESSION_ENGINES.items():
        if path == engine:
            return name
    return engine.rsplit(".", 1)[-1]


def _cache_kind(cache):
    backend = cache["BACKEND"]
    if "redis" in backend:
        return "redis"
    if "memcached" in backend:
        return "memcached"
    return "memory"
