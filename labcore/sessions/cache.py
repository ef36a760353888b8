"""Sessions in a cache: LocMem (`memory`), Redis or memcached."""

import pickle

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.cache import SessionStore as CacheStore
from django.core.cache.backends.locmem import LocMemCache

from labcore import serializers
from labcore.sessions.keys import create_with_a_new_key, valid_session_key
from labcore.sessions.synced import SyncedAsyncMethods
from labcore.stores import store_errors

# A session that vanished between load and save is not a store failure.
SESSION_RACES = (CreateError, UpdateError)


class SessionStore(SyncedAsyncMethods, CacheStore):
    # Keys are checked before any store sees them, so a store error can only
    # mean the store is down.
    def _validate_session_key(self, key):
        return valid_session_key(key)

    def load(self):
        with store_errors(settings.SESSION_STORE):
            session_data = self._cache.get(self.cache_key)
        if session_data is not None:
            return session_data
        self._session_key = None
        return {}

    def create(self):
        create_with_a_new_key(self)

    def save(self, must_create=False):
        with store_errors(settings.SESSION_STORE, expected=SESSION_RACES):
            super().save(must_create)

    def exists(self, session_key):
        with store_errors(settings.SESSION_STORE):
            return super().exists(session_key)

    def delete(self, session_key=None):
        with store_errors(settings.SESSION_STORE):
            super().delete(session_key)

    def stored_bytes(self):
        """Bytes the store keeps for this session: LocMem its pickle in memory, memcached its JSON."""
        data = self._cache.get(self.cache_key)
        if isinstance(self._cache, LocMemCache):
            return len(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))
        return len(serializers.dumps(data))
