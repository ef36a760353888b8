"""Sessions in Redis, through django-redis."""

from django.contrib.sessions.backends.base import CreateError, UpdateError
from redis.exceptions import AskError, MovedError

from labcore.clustercache import RedisClusterCache
from labcore.connections import RedisTarget
from labcore.health import check_cache
from labcore.replicas import confirmed_write, replicated
from labcore.sessions.cache import SESSION_RACES
from labcore.sessions.cache import SessionStore as CacheStore


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
        with replicated("redis", expected=SESSION_RACES):
            written = confirmed(
                self._cache, "set", self.cache_key, self._cache.client.encode(session),
                ex=age, nx=must_create, xx=not must_create,
            )
        if not written:
            raise CreateError if must_create else UpdateError

    def delete(self, session_key=None):
        """Delete the session, confirmed like a write: a logout a failover undid would log the user back in.

        Logout, idle logout and cycle_key (the old key, at login) all come here.
        """
        session_key = session_key or self.session_key
        if session_key is None:
            return
        with replicated("redis"):
            confirmed(self._cache, "delete", self.cache_key_prefix + session_key)

    def stored_bytes(self):
        """Bytes Redis keeps for this session."""
        return value_bytes(self._cache, self.cache_key)


def confirmed(cache, command, key, *args, **kwargs):
    """Run one write command on a session cache's key, WAITed for as its target says (labcore/replicas.py).

    The cache is django-redis's (one Redis, or Sentinel's primary) or the
    Redis Cluster one (labcore/clustercache.py). In a cluster the WAIT must
    follow the write on the connection to the key's own shard, so with
    REDIS_SYNC the write goes straight to the node the slot map names
    (without it, through the cluster client, which follows MOVED).
    """
    if isinstance(cache, RedisClusterCache):
        key = cache.make_and_validate_key(key)
        cluster, target = cache._cache.get_client(key, write=True), cache._cache.target
        if not target.sync:
            return confirmed_write(cluster, target, command, key, *args, **kwargs)
        try:
            return confirmed_write(_shard_primary(cluster, key), target, command, key, *args, **kwargs)
        except (MovedError, AskError):
            # The slot moved (a failover): learn the new map and write once more, on the new primary.
            cluster.nodes_manager.initialize()
            return confirmed_write(_shard_primary(cluster, key), target, command, key, *args, **kwargs)
    client = cache.client
    target = client._options.get("REDIS_TARGET") or RedisTarget("", 0)
    return confirmed_write(client.get_client(write=True), target, command, client.make_key(key), *args, **kwargs)


def _shard_primary(cluster, key):
    """A client of the node the slot map names as key's primary: one connection, for the write and its WAIT."""
    return cluster.get_redis_connection(cluster.get_node_from_key(key))


def check():
    """For /readyz: the sessions cache answers."""
    check_cache("sessions", "redis")


def value_bytes(cache, key):
    """The length of the value a django-redis cache holds under key."""
    return cache.client.get_client(write=False).strlen(cache.client.make_key(key))
