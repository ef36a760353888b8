import itertools
import secrets
import threading
from collections import OrderedDict, deque
from itertools import islice

from chat.presence.base import CHANGE_LOG_SIZE, PresenceStore, View, parse_version


class _Room:
    __slots__ = ("seen", "version", "log", "life")

    def __init__(self, life):
        self.seen = OrderedDict()  # username -> last seen, oldest first
        self.version = 0
        self.log = deque(maxlen=CHANGE_LOG_SIZE)  # (version, op, username)
        self.life = life


class MemoryPresence(PresenceStore):
    """Presence in a dict inside this process.

    Each instance sees only the heartbeats that reached it, and forgets them
    all when it dies. A room is held only while someone is in it: it is
    dropped when its last member leaves or expires, a read of a room nobody
    is in holds nothing, and once per TTL every room is swept, so a room
    nobody looks at again does not keep its expired members. A room that
    comes back has a new life, part of its versions' epoch, so a version
    from before is answered with the full list.
    """

    name = "memory"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._rooms = {}
        self._lives = itertools.count(1)
        self._swept_at = self.clock()
        self.epoch = secrets.token_hex(4)  # this process's memory

    def heartbeat(self, room, username, since=None):
        with self._lock:
            now = self._sweep()
            state = self._current(room, now)
            if state is None:
                state = self._rooms[room] = _Room(next(self._lives))
            joined = username not in state.seen
            state.seen[username] = now
            state.seen.move_to_end(username)
            if joined:
                self._record(state, "+", username)
            return self._view(state, since)

    def view(self, room, since=None):
        with self._lock:
            return self._view(self._current(room, self._sweep()), since)

    def leave(self, room, username):
        with self._lock:
            state = self._rooms.get(room)
            if state and state.seen.pop(username, None) is not None:
                self._record(state, "-", username)
                self._drop_if_empty(room, state)

    def leave_everywhere(self, username):
        with self._lock:
            for room, state in list(self._rooms.items()):
                if state.seen.pop(username, None) is not None:
                    self._record(state, "-", username)
                    self._drop_if_empty(room, state)

    def check(self):
        pass

    def rooms_held(self):
        """The rooms this process holds state for."""
        with self._lock:
            return sorted(self._rooms)

    def _current(self, room, now):
        """The room's state with its expired members taken out; None if nobody is left."""
        state = self._rooms.get(room)
        if state is not None:
            self._expire(state, now)
            self._drop_if_empty(room, state)
        return self._rooms.get(room)

    def _sweep(self):
        """Once per TTL, expire the members of every room and drop the empty ones; return now."""
        now = self.clock()
        if now - self._swept_at >= self.ttl:
            self._swept_at = now
            for room, state in list(self._rooms.items()):
                self._expire(state, now)
                self._drop_if_empty(room, state)
        return now

    def _drop_if_empty(self, room, state):
        if not state.seen:
            del self._rooms[room]

    def _expire(self, state, now):
        # Oldest first, so only the expired entries are looked at.
        horizon = now - self.ttl
        while state.seen:
            username, seen_at = next(iter(state.seen.items()))
            if seen_at >= horizon:
                break
            del state.seen[username]
            self._record(state, "-", username)

    @staticmethod
    def _record(state, op, username):
        state.version += 1
        state.log.append((state.version, op, username))

    def _view(self, state, since):
        if state is None:  # nobody is in the room: version 0 of no life
            version = f"{self.epoch}.0"
            return View(version, changes=[]) if since == version else View(version, online=[])
        epoch = f"{self.epoch}x{state.life}"
        version = f"{epoch}.{state.version}"
        parsed = parse_version(since)
        behind = state.version - parsed[1] if parsed and parsed[0] == epoch else None
        if behind is None or not 0 <= behind <= len(state.log):
            return View(version, online=sorted(state.seen))
        recent = list(islice(reversed(state.log), behind))[::-1]
        return View(version, changes=[[op, username] for _, op, username in recent])
