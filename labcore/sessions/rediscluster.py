"""Sessions in Redis Cluster: each session on the shard of its key's hash slot.

django-redis does not support Redis Cluster (its issue #208), so the
sessions cache here is Django's own Redis cache with a RedisCluster client
(labcore/clustercache.py), and this engine does what the `redis` engine
does through it: SET XX saves, SET NX creates, JSON values.

Every call goes through the breaker of the key's shard, not of Redis as a
whole: while one shard's primary is dead, the sessions on it answer 503
naming Redis, at once after the first failure, and the sessions on the
other shards never notice. The shard is named by the node that serves the
key now, so once the replica has been promoted the key's calls go to a
breaker that never failed.
"""

from contextlib import contextmanager

from django.contrib.sessions.backends.base import CreateError, UpdateError

from labcore.health import check_cache
from labcore.replicas import replicated
from labcore.sessions.cache import SESSION_RACES
from labcore.sessions.cache import SessionStore as CacheStore
from labcore.sessions.keys import valid_session_key
from labcore.sessions.redis import confirmed
from labcore.stores import redis_shard

STORE = "redis"


class SessionStore(CacheStore):
    @contextmanager
    def _shard(self, cache_key, expected=()):
        """The calls of the block go to the shard of cache_key: its breaker; a replication shortfall is a 503."""
        shard = redis_shard(self._cache.make_and_validate_key(cache_key))
        with replicated(STORE, expected=expected, part=shard):
            yield

    def load(self):
        cache_key = self.cache_key
        with self._shard(cache_key):
            session_data = self._cache.get(cache_key)
        if session_data is not None:
            return session_data
        self._session_key = None
        return {}

    def save(self, must_create=False):
        if self.session_key is None:
            return self.create()
        session = self._get_session(no_load=must_create)  # first: the expiry would load it
        age = int(self.get_expiry_age())
        if age <= 0:
            # Django's engines store nothing for a session that expired
            # already; a TTL of at least a second would keep it loadable.
            return self.delete()
        with self._shard(self.cache_key, expected=SESSION_RACES):
            written = confirmed(self._cache, "set", self.cache_key, self._cache._cache._serializer.dumps(session),
                                ex=age, nx=must_create, xx=not must_create)
        if not written:
            raise CreateError if must_create else UpdateError

    def exists(self, session_key):
        if not valid_session_key(session_key):
            return False  # None after a load that found nothing: no key, so no session (and no store to blame)
        cache_key = self.cache_key_prefix + session_key
        with self._shard(cache_key):
            return self._cache.has_key(cache_key)

    def delete(self, session_key=None):
        session_key = session_key or self.session_key
        if session_key is None:
            return
        cache_key = self.cache_key_prefix + session_key
        # Confirmed like a write: a logout a shard's failover undid would log the user back in.
        with self._shard(cache_key):
            confirmed(self._cache, "delete", cache_key)


def check():
    """For /readyz: the sessions cache answers (on the shard of the probe's key)."""
    check_cache("sessions", STORE)
