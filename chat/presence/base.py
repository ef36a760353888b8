import time


class PresenceStore:
    """Last-seen times of users per room, forgotten after `ttl` seconds.

    A store fills in touch, online, leave, leave_everywhere and check. The
    clock is a parameter so tests can move time.
    """

    name = None

    def __init__(self, *, ttl, clock=time.time):
        self.ttl = ttl
        self.clock = clock

    def heartbeat(self, room, username):
        """Record that username is in room now; return the room's online list."""
        self.touch(room, username)
        return self.online(room)

    def touch(self, room, username):
        raise NotImplementedError("a presence store must define touch(room, username)")

    def online(self, room):
        """Return the sorted usernames seen in room within the TTL."""
        raise NotImplementedError("a presence store must define online(room)")

    def leave(self, room, username):
        raise NotImplementedError("a presence store must define leave(room, username)")

    def leave_everywhere(self, username):
        raise NotImplementedError("a presence store must define leave_everywhere(username)")

    def check(self):
        """Raise StoreUnavailable if the store does not answer."""
        raise NotImplementedError("a presence store must define check()")
