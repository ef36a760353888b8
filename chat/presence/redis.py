import logging

from redis.cluster import RedisCluster

from chat.presence.base import CHANGE_LOG_SIZE, PresenceStore, View, parse_version
from labcore.stores import StoreUnavailable, redis_client, redis_shard, store_errors

logger = logging.getLogger(__name__)

# Shared by the scripts. KEYS: room's sorted set (username -> last seen),
# the room's counter (a hash: its life and its version number), change log
# (a list of "version op username"), the epoch, the counter of lives.
# ARGV[1]: now, ARGV[2]: the expiry horizon. Expired members are taken out
# and logged as departures; ZRANGEBYSCORE finds only those, cheaply.
#
# The three keys expire ROOM_TTL_MS after the room's last write, so a room
# nobody uses leaves nothing behind. A room that comes back gets a new life
# from the global counter `presence:lives`, and the life is part of its
# versions' epoch: a version from before the expiry names another epoch, so
# its holder gets the full list, never changes counted in another life
# (which would leave it showing the users whose departures expired unlogged).
#
# In a Redis Cluster a script may touch only keys of one slot, so there
# every key of a room carries the room as its hash tag, and the epoch and
# the lives are the room's own, expiring with it (TOUCHED 5, not 3): a room
# that comes back gets a new epoch, which names a new life just as well.
COMMON = """
local function touch()
    for i = 1, TOUCHED do redis.call('PEXPIRE', KEYS[i], ROOM_TTL_MS) end
end

local function bump()
    if redis.call('EXISTS', KEYS[2]) == 0 then
        redis.call('DEL', KEYS[3])
        redis.call('HSET', KEYS[2], 'life', redis.call('INCR', KEYS[5]), 'n', 0)
    end
    return redis.call('HINCRBY', KEYS[2], 'n', 1)
end

local function expire()
    local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
    for _, username in ipairs(gone) do
        redis.call('ZREM', KEYS[1], username)
        redis.call('RPUSH', KEYS[3], bump() .. ' - ' .. username)
    end
    if #gone > 0 then
        redis.call('LTRIM', KEYS[3], -LOG_SIZE, -1)
        touch()
    end
end

-- Lua's unpack() cannot take ten thousand values, so copy instead.
local function reply(version, kind, items)
    local out = {version, kind}
    for i = 1, #items do out[i + 2] = items[i] end
    return out
end

-- The epoch names this life of Redis: a restart loses it with the counters.
local function epoch()
    local current = redis.call('GET', KEYS[4])
    if not current then
        local now = redis.call('TIME')
        current = string.format('%x%x', now[1], now[2])
        redis.call('SET', KEYS[4], current EPOCH_EXPIRY)
    end
    return current
end

-- A room without a counter (never used, or expired) is at version 0 of no life.
local function view(since_epoch, since)
    local life = redis.call('HGET', KEYS[2], 'life')
    local era = epoch() .. (life and ('x' .. life) or '')
    local number = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
    local version = era .. '.' .. number
    local length = redis.call('LLEN', KEYS[3])
    if since_epoch ~= era or since > number or number - since > length then
        return reply(version, 'full', redis.call('ZRANGE', KEYS[1], 0, -1))
    end
    if since == number then
        return {version, 'changes'}
    end
    return reply(version, 'changes', redis.call('LRANGE', KEYS[3], length - (number - since), -1))
end
"""

# KEYS[6]: the user's set of rooms (not in a cluster, where it has a slot of
# its own: the caller adds to it after). ARGV[3]: username, ARGV[4] and ARGV[7]:
# the client's version's number and epoch ('' for the full list), ARGV[5]:
# seconds the user's set may idle, ARGV[6]: room.
HEARTBEAT = COMMON + """
expire()
if redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3]) == 1 then
    redis.call('RPUSH', KEYS[3], bump() .. ' + ' .. ARGV[3])
    redis.call('LTRIM', KEYS[3], -LOG_SIZE, -1)
end
touch()
if KEYS[6] then
    redis.call('SADD', KEYS[6], ARGV[6])
    redis.call('EXPIRE', KEYS[6], ARGV[5])
end
return view(ARGV[7], tonumber(ARGV[4]))
"""

# ARGV[3] and ARGV[4]: the client's version's number and epoch.
VIEW = COMMON + """
expire()
return view(ARGV[4], tonumber(ARGV[3]))
"""

# In a cluster, the user's set of rooms (KEYS[1]) on its own shard: one
# round trip instead of an SADD and an EXPIRE. ARGV[1]: room, ARGV[2]: seconds.
REMEMBER_ROOM = """
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

# ARGV[1]: username.
LEAVE = COMMON + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[3], bump() .. ' - ' .. ARGV[1])
    redis.call('LTRIM', KEYS[3], -LOG_SIZE, -1)
    touch()
end
return 1
"""


class RedisPresence(PresenceStore):
    """Presence shared by all instances: per room a sorted set, a version and a change log.

    Each call is one script, so one round trip, and costs O(log n) plus the
    changes it returns, whatever the room's size. A set per user lists their
    rooms, so a logout can leave them all.
    """

    name = "redis"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._scripts = {}

    def _script(self, source):
        client = redis_client()
        key = (id(client), source)
        if key not in self._scripts:
            sharded = isinstance(client, RedisCluster)
            source = source.replace("LOG_SIZE", str(CHANGE_LOG_SIZE)).replace("TOUCHED", "5" if sharded else "3")
            source = source.replace("EPOCH_EXPIRY", ", 'PX', ROOM_TTL_MS" if sharded else "")
            self._scripts[key] = client.register_script(
                source.replace("ROOM_TTL_MS", str(int(self.room_ttl * 1000))))
        return self._scripts[key]

    @staticmethod
    def _keys(room):
        if isinstance(redis_client(), RedisCluster):
            return [f"presence:room:{{{room}}}", f"presence:counter:{{{room}}}", f"presence:log:{{{room}}}",
                    f"presence:epoch:{{{room}}}", f"presence:lives:{{{room}}}"]
        return [f"presence:room:{room}", f"presence:counter:{room}", f"presence:log:{room}", "presence:epoch",
                "presence:lives"]

    def _shard(self, room):
        # A dead shard must not stop the rooms on the others (labcore/stores.py).
        return redis_shard(self._keys(room)[0])

    def heartbeat(self, room, username, since=None):
        now = self.clock()
        epoch, number = parse_version(since) or ("", 0)
        user_key = f"presence:user:{username}"
        sharded = isinstance(redis_client(), RedisCluster)
        with store_errors("redis", part=self._shard(room)):
            reply = self._script(HEARTBEAT)(
                keys=[*self._keys(room), *([] if sharded else [user_key])],
                args=[now, now - self.ttl, username, number, int(self.ttl) + 1, room, epoch],
            )
        if sharded:
            self._remember_room(user_key, room)
        return self._parse(reply)

    def _remember_room(self, user_key, room):
        """In a cluster, add the room to the user's set, on that key's own shard.

        The heartbeat itself has succeeded: a dead shard holding the user's set
        must not fail it. The set only lets a logout leave every room at once;
        it heals on the next heartbeat, and until then a logout leaves the user
        in this room until their presence expires (PRESENCE_TTL).
        """
        try:
            with store_errors("redis", part=redis_shard(user_key)):
                self._script(REMEMBER_ROOM)(keys=[user_key], args=[room, int(self.ttl) + 1])
        except StoreUnavailable as failure:
            logger.warning("presence: the rooms of %s not updated (%s)", user_key, failure)

    def view(self, room, since=None):
        now = self.clock()
        epoch, number = parse_version(since) or ("", 0)
        with store_errors("redis", part=self._shard(room)):
            reply = self._script(VIEW)(keys=self._keys(room), args=[now, now - self.ttl, number, epoch])
        return self._parse(reply)

    def leave(self, room, username):
        with store_errors("redis", part=self._shard(room)):
            self._script(LEAVE)(keys=self._keys(room), args=[username])
        user_key = f"presence:user:{username}"
        with store_errors("redis", part=redis_shard(user_key)):
            redis_client().srem(user_key, room)

    def leave_everywhere(self, username):
        with store_errors("redis"):
            client = redis_client()
            rooms = client.smembers(f"presence:user:{username}")
            for room in rooms:
                self._script(LEAVE)(keys=self._keys(room.decode()), args=[username])
            client.delete(f"presence:user:{username}")

    def check(self):
        with store_errors("redis"):
            redis_client().ping()

    @staticmethod
    def _parse(reply):
        version, kind, *items = (item.decode() for item in reply)
        if kind == "full":
            return View(version, online=sorted(items))
        return View(version, changes=[entry.split(" ", 2)[1:] for entry in items])
