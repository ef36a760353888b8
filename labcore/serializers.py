"""JSON, never pickle, for every value the site reads back from a store.

django-redis and pymemcache pickle by default, and unpickling runs whatever
the bytes say: anyone who can write one key of the store (a neighbour on the
machine, a compromised store) runs code as the site. Here a value is JSON,
or an integer stored as digits so that the stores' INCR and DECR still work.
A value that is neither was not written by the site: it reads as absent, so
a planted session is simply no session.
"""

import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django_redis.serializers.base import BaseSerializer
from pymemcache.serde import FLAG_INTEGER

logger = logging.getLogger(__name__)

FLAG_JSON = 1 << 5  # pymemcache's own flags stop at 1 << 4 (text)


def dumps(value):
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def loads(data):
    """The JSON value in data, or None (absent) if data is not JSON."""
    try:
        return json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        logger.warning("a store value that is not JSON was ignored (%d bytes)", len(data))
        return None


class RedisJSONSerializer(BaseSerializer):
    """django-redis's serializer (OPTIONS SERIALIZER); django-redis keeps integers as digits itself."""

    def dumps(self, value):
        return dumps(value)

    def loads(self, value):
        return loads(value)


class MemcachedJSONSerde:
    """pymemcache's serde (OPTIONS serde): integers as digits, everything else JSON."""

    def serialize(self, key, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode(), FLAG_INTEGER
        return dumps(value), FLAG_JSON

    def deserialize(self, key, value, flags):
        if flags == FLAG_INTEGER:
            return int(value)
        if flags == FLAG_JSON:
            return loads(value)
        # Pickled (flag 1) or anything else: not ours, and never unpickled.
        logger.warning("a memcached value with flags %d was ignored", flags)
        return None
