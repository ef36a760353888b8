"""A Django cache on Redis Cluster: Django's own RedisCache, whose client sends each key to its shard.

django-redis does not support Redis Cluster (its issue #208). Django's
built-in Redis cache asks its client class for a connection per key
("so that custom cache client can be implemented which might require the
key to select the server, e.g. sharding", says its get_client), so a
cluster needs only a client class that answers with this process's
RedisCluster (labcore/connections.py), which routes every single-key
command to the primary of the key's slot. Values are JSON, never pickle.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from labcore import connections, serializers


class JSONSerializer:
    """Integers as digits (so INCR works), everything else JSON."""

    def dumps(self, value):
        if type(value) is int:
            return value
        return serializers.dumps(value)

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            return serializers.loads(data)


class ClusterCacheClient(RedisCacheClient):
    def __init__(self, servers, *, target):
        super().__init__(servers, serializer=JSONSerializer)
        self.target = target

    def get_client(self, key=None, *, write=False):
        return connections.redis_client(self.target)


class RedisClusterCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ClusterCacheClient
