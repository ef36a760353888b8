import re
import time
from dataclasses import dataclass, field

# Changes a store remembers per room. A client further behind than this gets
# the full list again, so the cost of a poll is bounded either way.
CHANGE_LOG_SIZE = 1000

# A room's state (its list, version and change log) is forgotten this many
# presence TTLs after its last change. Longer than one TTL, so it outlives
# every member a heartbeat listed; longer still so that a client polling a
# room that just emptied keeps getting small diffs rather than full lists.
ROOM_TTL_FACTOR = 4


VERSION = re.compile(r"([0-9a-z]{1,32})\.([0-9]{1,18})")


def parse_version(text):
    """Split a client's version "<epoch>.<number>" into its parts; None if it is not one."""
    match = VERSION.fullmatch(text) if isinstance(text, str) else None
    return (match[1], int(match[2])) if match else None


@dataclass
class View:
    """What a client learns about a room: the full list, or the changes since its version.

    A version is "<epoch>.<number>". The epoch names the state the numbers
    count in (one process's memory, or one life of a Redis, and the room's
    life in it), so a version from another instance's memory, from before a
    Redis restart or from before the room was forgotten is never mistaken
    for a recent one: the client gets the full list instead.
    """

    version: str
    online: list | None = None  # set when the client must (re)load the whole list
    changes: list = field(default_factory=list)  # [op, username] with op "+" (joined) or "-" (left)

    def as_json(self):
        if self.online is not None:
            return {"version": self.version, "online": self.online}
        return {"version": self.version, "changes": self.changes}


class PresenceStore:
    """Who was seen in each room within the last `ttl` seconds, with a version per room.

    Every join and every departure (leave, logout or expiry) bumps the room's
    version and is logged, so a client that holds a version gets only what
    changed since: a poll costs the same in a room of ten and of ten
    thousand. A store fills in heartbeat, view, leave, leave_everywhere and
    check. The clock is a parameter so tests can move time.
    """

    name = None

    def __init__(self, *, ttl, clock=time.time):
        self.ttl = ttl
        self.room_ttl = ROOM_TTL_FACTOR * ttl
        self.clock = clock

    def heartbeat(self, room, username, since=None):
        """Record that username is in room now; return the room's View since version `since`."""
        raise NotImplementedError("a presence store must define heartbeat(room, username, since)")

    def view(self, room, since=None):
        """Return the room's View: the changes after version `since`, or the full list."""
        raise NotImplementedError("a presence store must define view(room, since)")

    def leave(self, room, username):
        raise NotImplementedError("a presence store must define leave(room, username)")

    def leave_everywhere(self, username):
        raise NotImplementedError("a presence store must define leave_everywhere(username)")

    def check(self):
        """Raise StoreUnavailable if the store does not answer."""
        raise NotImplementedError("a presence store must define check()")

    def online(self, room):
        """Return the sorted usernames seen in room within the TTL."""
        return self.view(room).online
