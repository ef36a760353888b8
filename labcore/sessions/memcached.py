"""Sessions in memcached, through pymemcache: the cache engine, with a readiness check."""

from labcore.health import check_cache
from labcore.sessions.cache import SessionStore  # noqa: F401  (the engine's class)


def check():
    """For /readyz: the sessions cache answers."""
    check_cache("sessions", "memcached")
