"""Sessions in the database with a Redis cache in front.

The database is the truth, so a cache outage costs speed, not logins: reads
fall back to the database. Writes need the cache, though: a copy left in it
while the database moved on would be read again once the cache is back (and
written back to the database by the next save). So a save first removes the
cached copy, and refuses (503 naming Redis) when it cannot; then writes the
database, then caches the new value if it can, and a reader that missed the
cache refills it only where nothing newer is (SET NX). A logout removes the
cached copy the same way before the row. With REDIS_SYNC the removal is
WAITed for (labcore/replicas.py), so a failover cannot bring the copy back.
Every cache call goes through Redis's circuit breaker: while it is open
reads skip the cache at once instead of costing each request a timeout.
"""

import logging

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore

from labcore.replicas import replicated
from labcore.sessions.db import SessionStore as DBStore
from labcore.sessions.keys import valid_session_key
from labcore.sessions.redis import confirmed, value_bytes
from labcore.sessions.synced import SyncedAsyncMethods
from labcore.stores import StoreUnavailable, store_errors

logger = logging.getLogger(__name__)
CACHE = "redis"  # the store in front of the database (the registry's row)


class SessionStore(SyncedAsyncMethods, CachedDBStore):
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
                # add, not set: a save may have cached a newer value since the row was read.
                self._cache.add(self.cache_key, data, self.get_expiry_age(expiry=session.expire_date))
        except StoreUnavailable as failure:
            logger.warning("session cache unavailable, not refilled: %s", failure)
        return data

    def save(self, must_create=False):
        if self.session_key is not None and not must_create:
            self._forget_cached(self.session_key)
        DBStore.save(self, must_create)
        try:
            with store_errors(CACHE):
                self._cache.set(self.cache_key, self._session, self.get_expiry_age())
        except StoreUnavailable as failure:
            logger.warning("session cache unavailable, not updated (the copy was removed): %s", failure)

    def exists(self, session_key):
        return DBStore.exists(self, session_key)

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self._forget_cached(session_key)
        DBStore.delete(self, session_key)

    def _forget_cached(self, session_key):
        """Remove the cached copy (confirmed by REDIS_SYNC replicas); StoreUnavailable if that cannot be done."""
        with replicated(CACHE):
            confirmed(self._cache, "delete", self.cache_key_prefix + session_key)

    def stored_bytes(self):
        """Bytes kept for this session: the cached copy in Redis and the row."""
        return value_bytes(self._cache, self.cache_key) + DBStore.stored_bytes(self)
