import threading

from chat.presence.base import PresenceStore


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

    def touch(self, room, username):
        with self._lock:
            self._rooms.setdefault(room, {})[username] = self.clock()

    def online(self, room):
        horizon = self.clock() - self.ttl
        with self._lock:
            seen = self._rooms.get(room, {})
            for username in [u for u, at in seen.items() if at < horizon]:
                del seen[username]
            return sorted(seen)

    def leave(self, room, username):
        with self._lock:
            self._rooms.get(room, {}).pop(username, None)

    def leave_everywhere(self, username):
        with self._lock:
            for seen in self._rooms.values():
                seen.pop(username, None)

    def check(self):
        pass
