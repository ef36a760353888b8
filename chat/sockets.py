"""Who is online by WebSocket: an open socket in the room, one entry per socket.

With the in-memory channel layer each process knows only its own sockets
(the documents' "chat partner list in process memory"): a user on another
instance is never listed. With the Redis layer every instance writes its
sockets into one sorted set per room, each entry scored with the moment it
lapses, SOCKET_EXPIRY seconds after its socket last refreshed it
(settings). A closed socket removes its entry; a killed
instance's entries lapse within SOCKET_EXPIRY: soft state, as the HTTP
presence is.
"""

import threading
import time
from collections import defaultdict

from asgiref.sync import sync_to_async
from django.conf import settings

from labcore.connections import redis_client
from labcore.stores import store_errors


class MemorySockets:
    """This process's open sockets per room."""

    def __init__(self):
        self._rooms = defaultdict(dict)  # room -> {channel name: username}
        self._lock = threading.Lock()

    def join(self, room, channel, username):
        with self._lock:
            self._rooms[room][channel] = username

    refresh = join

    def leave(self, room, channel, username):
        with self._lock:
            self._rooms[room].pop(channel, None)
            if not self._rooms[room]:
                del self._rooms[room]

    def online(self, room):
        with self._lock:
            return sorted(set(self._rooms.get(room, {}).values()))


class RedisSockets:
    """Every instance's open sockets per room, in Redis: a sorted set of `<channel> <username>` by lapse time."""

    def _call(self, work):
        with store_errors("redis"):
            return work(redis_client(settings.REDIS_TARGET))

    @staticmethod
    def _key(room):
        return f"lab:sockets:{room}"

    def join(self, room, channel, username):
        def join(redis):
            with redis.pipeline() as pipe:
                pipe.zadd(self._key(room), {f"{channel} {username}": time.time() + settings.SOCKET_EXPIRY})
                pipe.expire(self._key(room), settings.SOCKET_EXPIRY)
                pipe.execute()
        self._call(join)

    refresh = join

    def leave(self, room, channel, username):
        self._call(lambda redis: redis.zrem(self._key(room), f"{channel} {username}"))

    def online(self, room):
        def online(redis):
            with redis.pipeline() as pipe:
                pipe.zremrangebyscore(self._key(room), "-inf", time.time())
                pipe.zrange(self._key(room), 0, -1)
                members = pipe.execute()[1]
            return sorted({member.decode().partition(" ")[2] for member in members})
        return self._call(online)


_memory = MemorySockets()


def sockets():
    """The socket presence of this process's channel layer."""
    return RedisSockets() if settings.CHANNEL_LAYER == "redis" else _memory


async def join(room, channel, username):
    await sync_to_async(sockets().join)(room, channel, username)


async def refresh(room, channel, username):
    await sync_to_async(sockets().refresh)(room, channel, username)


async def leave(room, channel, username):
    await sync_to_async(sockets().leave)(room, channel, username)


async def online(room):
    return await sync_to_async(sockets().online)(room)
