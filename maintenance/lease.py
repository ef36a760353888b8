"""A lease in Redis: the right to act, which expires unless its holder renews it.

acquire: SET NX PX with a random owner token, and a fencing token from a
counter that only grows (one script, so both or neither happen).
renew: compare-and-extend, only while the owner token is ours.
release: compare-and-delete, likewise.

The holder believes it holds the lease only until the expiry it last
confirmed, measured on its own monotonic clock from before it asked, so it
stops acting before Redis can give the lease to someone else.
"""

import secrets
import time
from dataclasses import dataclass

# ARGV[5]: a floor, the highest token the database accepted: a Redis that
# lost its counter must not hand out a token the fence already passed.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local token = redis.call('INCR', KEYS[2])
    if token <= tonumber(ARGV[5]) then
        token = tonumber(ARGV[5]) + 1
        redis.call('SET', KEYS[2], token)
    end
    redis.call('HSET', KEYS[3], 'owner', ARGV[1], 'instance', ARGV[3], 'token', token,
               'acquired_at', ARGV[4], 'renewed_at', ARGV[4])
    return token
end
return false
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('HSET', KEYS[2], 'renewed_at', ARGV[3])
    return 1
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class Holding:
    token: int
    valid_until: float  # time.monotonic() after which we must assume the lease is gone


class Lease:
    def __init__(self, client, name, *, ttl, instance):
        self.client = client
        self.name = name
        self.ttl = ttl
        self.instance = instance
        self.owner = secrets.token_hex(16)
        # One hash tag ({name}): in a Redis Cluster the scripts' keys must share a slot.
        self.keys = (f"lease:{{{name}}}", f"lease:{{{name}}}:fence", f"lease:{{{name}}}:info")
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def acquire(self, floor=0):
        """Return a Holding, with a token above floor, if the lease was free; else None."""
        asked = time.monotonic()
        token = self._acquire(keys=self.keys,
                              args=[self.owner, int(self.ttl * 1000), self.instance, time.time(), floor])
        return Holding(int(token), asked + self.ttl) if token else None

    def renew(self, holding):
        """Extend the lease; return False if it is no longer ours."""
        asked = time.monotonic()
        renewed = self._renew(keys=[self.keys[0], self.keys[2]],
                              args=[self.owner, int(self.ttl * 1000), time.time()])
        if renewed:
            holding.valid_until = asked + self.ttl
        return bool(renewed)

    def release(self):
        self._release(keys=[self.keys[0]], args=[self.owner])

    def info(self):
        """What Redis says about the lease: holder, token, times, time left."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys[2])
        pipe.get(self.keys[0])
        pipe.pttl(self.keys[0])
        details, owner, pttl = pipe.execute()
        details = {k.decode(): v.decode() for k, v in details.items()}
        held = owner is not None and details.get("owner") == owner.decode()
        return {
            "held": held,
            "instance": details.get("instance") if held else None,
            "token": int(details["token"]) if held else None,
            "acquired_at": float(details["acquired_at"]) if held else None,
            "renewed_at": float(details["renewed_at"]) if held else None,
            "expires_in": round(pttl / 1000, 3) if held and pttl > 0 else None,
            "last_token": int(details["token"]) if "token" in details else None,
        }
