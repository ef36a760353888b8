"""Sessions in Redis, through django-redis."""

from django.contrib.sessions.backends.base import UpdateError

from labcore.health import check_cache
from labcore.sessions.cache import SESSION_RACES
from labcore.sessions.cache import SessionStore as CacheStore
from labcore.stores import store_errors


class SessionStore(CacheStore):
    def save(self, must_create=False):
        if must_create or self.session_key is None:
            return super().save(must_create)
        # Django's cache engine reads a session before rewriting it, to fail
        # if it vanished meanwhile: two round trips. SET XX does both in one.
        with store_errors("redis", expected=SESSION_RACES):
            written = self._cache.set(self.cache_key, self._get_session(), self.get_expiry_age(), xx=True)
        if not written:
            raise UpdateError

    def stored_bytes(self):
        """Bytes Redis keeps for this session."""
        return value_bytes(self._cache, self.cache_key)


def check():
    """For /readyz: the sessions cache answers."""
    check_cache("sessions", "redis")


def value_bytes(cache, key):
    """The length of the value a django-redis cache holds under key."""
    return cache.client.get_client(write=False).strlen(cache.client.make_key(key))
