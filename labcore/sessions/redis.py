"""Sessions in Redis, through django-redis."""

from django.contrib.sessions.backends.base import CreateError, UpdateError

from labcore.connections import RedisTarget
from labcore.health import check_cache
from labcore.replicas import confirmed_write
from labcore.sessions.cache import SESSION_RACES
from labcore.sessions.cache import SessionStore as CacheStore
from labcore.stores import store_errors


class SessionStore(CacheStore):
    def save(self, must_create=False):
        if self.session_key is None:
            return self.create()
        session = self._get_session(no_load=must_create)  # first: the expiry would load it
        age = int(self.get_expiry_age())
        if age <= 0:
            # Django's engines store nothing for a session that expired
            # already; a TTL of at least a second would keep it loadable.
            return self.delete()
        # Django's cache engine reads a session before rewriting it, to fail
        # if it vanished meanwhile: two round trips. SET XX does both in one,
        # and SET NX creates. With REDIS_SYNC, WAIT follows on the same
        # connection, so a login or a session write is acknowledged only
        # once that many replicas have it (labcore/replicas.py).
        client = self._cache.client
        with store_errors("redis", expected=SESSION_RACES):
            written = confirmed_write(
                client.get_client(write=True), self._target(), "set",
                client.make_key(self.cache_key), client.encode(session),
                ex=age, nx=must_create, xx=not must_create,
            )
        if not written:
            raise CreateError if must_create else UpdateError

    def _target(self):
        return self._cache.client._options.get("REDIS_TARGET") or RedisTarget("", 0)

    def stored_bytes(self):
        """Bytes Redis keeps for this session."""
        return value_bytes(self._cache, self.cache_key)


def check():
    """For /readyz: the sessions cache answers."""
    check_cache("sessions", "redis")


def value_bytes(cache, key):
    """The length of the value a django-redis cache holds under key."""
    return cache.client.get_client(write=False).strlen(cache.client.make_key(key))
