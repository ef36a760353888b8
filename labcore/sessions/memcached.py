"""Sessions in memcached, through pymemcache: the cache engine, with one-command updates and a readiness check."""

from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError

from labcore.health import check_cache
from labcore.sessions.cache import SESSION_RACES
from labcore.sessions.cache import SessionStore as CacheStore
from labcore.stores import store_errors


class SessionStore(CacheStore):
    def save(self, must_create=False):
        if self.session_key is None or must_create:
            return super().save(must_create)
        # Django's cache engine reads a session before rewriting it, to fail
        # if it vanished meanwhile (a logout): two round trips, and a logout
        # that lands between them is undone by the write. memcached's
        # `replace` stores only over a key that exists: one command, no gap.
        session = self._get_session()  # first: the expiry would load it
        cache = self._cache
        with store_errors(settings.SESSION_STORE, expected=SESSION_RACES):
            replaced = cache._cache.replace(cache.make_and_validate_key(self.cache_key), session,
                                            cache.get_backend_timeout(self.get_expiry_age()))
        if not replaced:
            raise UpdateError


def check():
    """For /readyz: the sessions cache answers."""
    check_cache("sessions", "memcached")
