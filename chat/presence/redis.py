import math

from labsite.stores import redis_client, store_errors

from chat.presence.base import PresenceStore


class RedisPresence(PresenceStore):
    """Presence shared by all instances: one sorted set per room.

    Members are usernames scored by last-seen time, pruned on read. A set per
    user lists their rooms, so a logout can leave them all. Both keys expire,
    so a room nobody visits leaves nothing behind.
    """

    name = "redis"

    def _room_key(self, room):
        return f"presence:room:{room}"

    def _user_key(self, username):
        return f"presence:user:{username}"

    def heartbeat(self, room, username):
        now = self.clock()
        expire = math.ceil(self.ttl)
        with store_errors("redis"):
            pipe = redis_client().pipeline(transaction=False)
            pipe.zadd(self._room_key(room), {username: now})
            pipe.expire(self._room_key(room), expire)
            pipe.sadd(self._user_key(username), room)
            pipe.expire(self._user_key(username), expire)
            pipe.zremrangebyscore(self._room_key(room), "-inf", f"({now - self.ttl}")
            pipe.zrange(self._room_key(room), 0, -1)
            members = pipe.execute()[-1]
        return sorted(m.decode() for m in members)

    def touch(self, room, username):
        self.heartbeat(room, username)

    def online(self, room):
        horizon = self.clock() - self.ttl
        with store_errors("redis"):
            members = redis_client().zrangebyscore(self._room_key(room), horizon, "+inf")
        return sorted(m.decode() for m in members)

    def leave(self, room, username):
        with store_errors("redis"):
            pipe = redis_client().pipeline(transaction=False)
            pipe.zrem(self._room_key(room), username)
            pipe.srem(self._user_key(username), room)
            pipe.execute()

    def leave_everywhere(self, username):
        with store_errors("redis"):
            client = redis_client()
            rooms = client.smembers(self._user_key(username))
            pipe = client.pipeline(transaction=False)
            for room in rooms:
                pipe.zrem(self._room_key(room.decode()), username)
            pipe.delete(self._user_key(username))
            pipe.execute()

    def check(self):
        with store_errors("redis"):
            redis_client().ping()
