"""Sessions in Redis, through django-redis."""

from django.contrib.sessions.backends.base import UpdateError

from labsite.sessions.cache import SESSION_RACES
from labsite.sessions.cache import SessionStore as CacheStore
from labsite.stores import store_errors


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
