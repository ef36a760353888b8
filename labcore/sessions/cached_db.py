"""Sessions in the database with a Redis cache in front.

The database is the truth, so a cache outage costs speed, not logins: reads
fall back to the database. A logout must not leave a copy in the cache that
could come back with it, so deleting needs the cache (503 if it is down).
Every cache call goes through Redis's circuit breaker: while it is open the
cache is skipped at once instead of costing each request a timeout.
"""

import logging

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore

from labcore.sessions.db import SessionStore as DBStore
from labcore.sessions.keys import valid_session_key
from labcore.sessions.redis import value_bytes
from labcore.stores import StoreUnavailable, store_errors

logger = logging.getLogger(__name__)
CACHE = "redis"  # the store in front of the database (the registry's row)


class SessionStore(CachedDBStore):
    def _validate_session_key(self, key):
        return valid_session_key(key)

    def load(self):
        try:
            with store_errors(CACHE):
                data = self._cache.get(self.cache_key)
        except StoreUnavailable as failure:
            logger.warning("session cache unavailable, reading the database: %s", failure)
            return DBStore.load(self)
        if data is not None:
            return data
        session = self._get_session_from_db()
        if not session:
            return {}
        data = self.decode(session.session_data)
        try:
            with store_errors(CACHE):
                self._cache.set(self.cache_key, data, self.get_expiry_age(expiry=session.expire_date))
        except StoreUnavailable as failure:
            logger.warning("session cache unavailable, not refilled: %s", failure)
        return data

    def save(self, must_create=False):
        DBStore.save(self, must_create)
        try:
            with store_errors(CACHE):
                self._cache.set(self.cache_key, self._session, self.get_expiry_age())
        except StoreUnavailable as failure:
            logger.warning("session cache unavailable, not updated: %s", failure)

    def exists(self, session_key):
        return DBStore.exists(self, session_key)

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        with store_errors(CACHE):
            self._cache.delete(self.cache_key_prefix + session_key)
        DBStore.delete(self, session_key)

    def stored_bytes(self):
        """Bytes kept for this session: the cached copy in Redis and the row."""
        return value_bytes(self._cache, self.cache_key) + DBStore.stored_bytes(self)
