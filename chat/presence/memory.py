import secrets
import threading
from collections import OrderedDict, deque
from itertools import islice

from chat.presence.base import CHANGE_LOG_SIZE, PresenceStore, View, parse_version


class _Room:
    __slots__ = ("seen", "version", "log")

    def __init__(self):
        self.seen = OrderedDict()  # username -> last seen, oldest first
        self.version = 0
        self.log = deque(maxlen=CHANGE_LOG_SIZE)  # (version, op, username)


class MemoryPresence(PresenceStore):
    """Presence in a dict inside this process.

    Each instance sees only the heartbeats that reached it, and forgets them
    all when it dies.
    """

    name = "memory"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._rooms = {}
        self.epoch = secrets.token_hex(4)  # this process's memory

    def heartbeat(self, room, username, since=None):
        with self._lock:
            state = self._rooms.setdefault(room, _Room())
            now = self.clock()
            self._expire(state, now)
            joined = username not in state.seen
            state.seen[username] = now
            state.seen.move_to_end(username)
            if joined:
                self._record(state, "+", username)
            return self._view(state, since)

    def view(self, room, since=None):
        with self._lock:
            state = self._rooms.setdefault(room, _Room())
            self._expire(state, self.clock())
            return self._view(state, since)

    def leave(self, room, username):
        with self._lock:
            state = self._rooms.get(room)
            if state and state.seen.pop(username, None) is not None:
                self._record(state, "-", username)

    def leave_everywhere(self, username):
        with self._lock:
            for state in self._rooms.values():
                if state.seen.pop(username, None) is not None:
                    self._record(state, "-", username)

    def check(self):
        pass

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
        version = f"{self.epoch}.{state.version}"
        parsed = parse_version(since)
        behind = state.version - parsed[1] if parsed and parsed[0] == self.epoch else None
        if behind is None or not 0 <= behind <= len(state.log):
            return View(version, online=sorted(state.seen))
        recent = list(islice(reversed(state.log), behind))[::-1]
        return View(version, changes=[[op, username] for _, op, username in recent])
