"""What the load generator saw, second by second, written out when Locust quits.

Locust's own statistics cover requests; the lab also needs sessions lost,
which instance served each request, presence accuracy and the acknowledged
messages, what each user's polls received and, in the store-fault
experiments, each user's session ledger (loadtest/harness/sessions.py) and the
span of every failed request. One Recorder per Locust
process collects them; when the environment variable LOADTEST_OUTPUT names
a file, each process writes its own JSON beside it at exit
(`<LOADTEST_OUTPUT>.<pid>.json`), and the analysis merges them.

A request counts in the second it started, not the one it ended in: the
experiment counts only requests that started inside the measured window,
so one still in flight when Locust stops is outside it, not a failure in
its last second.
"""

import json
import os
import threading
import time
from collections import Counter, defaultdict

from loadtest.harness.sessions import Ledger


class Second:
    __slots__ = ("requests", "failures", "latencies", "sessions_lost", "accuracy", "served")

    def __init__(self):
        self.requests = 0
        self.failures = 0
        self.latencies = []
        self.sessions_lost = 0
        self.accuracy = []
        self.served = defaultdict(int)

    def as_json(self):
        return {
            "requests": self.requests,
            "failures": self.failures,
            "latencies": [round(ms, 2) for ms in self.latencies],
            "sessions_lost": self.sessions_lost,
            "accuracy": [round(a, 4) for a in self.accuracy],
            "served": dict(self.served),
        }


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self.seconds = defaultdict(Second)
        self.acknowledged = []  # (client_id, room)
        self.lost_by_user = defaultdict(list)  # username -> [times]
        self.users = set()
        self.failure_kinds = defaultdict(int)
        self.active = defaultdict(set)  # room -> usernames the generator runs there
        self.pollers = {}  # username -> {"room", "first_cursor", "last_cursor", "seen": Counter of ids}
        self.steps = []  # (time, users): when a capacity step's ramp began, and to how many users
        self.ledgers = defaultdict(Ledger)  # username -> its current session as acknowledged
        self.left_behind = []  # (username, ledger): sessions a user left for a fresh login, read back at the end
        self.session_counts = Counter()  # writes/logins acknowledged and found lost during the run
        self.failed_spans = []  # (start, end) of every failed request

    def _second(self):
        return self.seconds[int(time.time())]

    def request(self, *, latency_ms, failed, served_by, kind=None, started=None):
        """Count one request in the second it started (time.time() at its start)."""
        with self._lock:
            second = self.seconds[int(started if started is not None else time.time())]
            second.requests += 1
            second.latencies.append(latency_ms)
            if failed:
                second.failures += 1
                self.failure_kinds[kind or "unknown"] += 1
                begun = started if started is not None else time.time() - latency_ms / 1000
                self.failed_spans.append((round(begun, 3), round(begun + latency_ms / 1000, 3)))
            if served_by:
                second.served[served_by] += 1

    def session_lost(self, username):
        with self._lock:
            self._second().sessions_lost += 1
            self.lost_by_user[username].append(time.time())
            writes, logins = self.ledgers[username].gone()
            self.session_counts["writes_lost"] += writes
            self.session_counts["logins_lost"] += logins

    def session_left(self, username):
        """The user leaves its session for a fresh login; the session is still read back after the run."""
        with self._lock:
            ledger = self.ledgers.pop(username, None)
            if ledger and (ledger.login or ledger.acked):
                self.left_behind.append((username, ledger.as_json()))

    def login_acknowledged(self, username, cookies):
        with self._lock:
            self.ledgers[username].logged_in(cookies)
            self.session_counts["logins_acknowledged"] += 1

    def session_written(self, username, counter, previous, cookies):
        """A session write the site acknowledged, and the counter it found there before."""
        with self._lock:
            lost = self.ledgers[username].written(counter, previous, cookies)
            self.session_counts["writes_acknowledged"] += 1
            self.session_counts["writes_lost"] += lost
            if lost:
                self.session_counts["rollbacks"] += 1

    def join(self, room, username):
        with self._lock:
            self.users.add(username)
            self.active[room].add(username)

    def leave(self, room, username):
        with self._lock:
            self.active[room].discard(username)

    def presence(self, room, online):
        """Record how many of the room's active users the server lists as online."""
        with self._lock:
            active = self.active[room]
            if active:
                self._second().accuracy.append(len(active & set(online)) / len(active))

    def step(self, users):
        with self._lock:
            self.steps.append((time.time(), users))

    def acknowledged_message(self, client_id, room):
        with self._lock:
            self.acknowledged.append((client_id, room))

    def polled(self, username, room, *, after, ids, cursor):
        """Record one poll: the ids it returned after the cursor `after`, and the cursor it gave.

        A poll without a cursor (the latest messages) only says where the
        user starts following; from then on every id it receives is counted,
        so the audit can tell a message missed from one seen twice.
        """
        if cursor is None:
            return
        with self._lock:
            poller = self.pollers.setdefault(
                username, {"room": room, "first_cursor": None, "last_cursor": None, "seen": Counter()})
            if after is None:
                if poller["first_cursor"] is None:
                    poller["first_cursor"] = cursor
                    poller["last_cursor"] = cursor
                return
            poller["seen"].update(ids)
            poller["last_cursor"] = cursor

    def as_json(self):
        with self._lock:
            return {
                "seconds": {str(t): s.as_json() for t, s in sorted(self.seconds.items())},
                "acknowledged": self.acknowledged,
                "lost_by_user": dict(self.lost_by_user),
                "users": sorted(self.users),
                "failure_kinds": dict(self.failure_kinds),
                "steps": self.steps,
                "sessions": [*self.left_behind,
                             *((username, ledger.as_json()) for username, ledger in self.ledgers.items())],
                "session_counts": dict(self.session_counts),
                "failed_spans": self.failed_spans,
                "pollers": {
                    username: {**poller, "seen": {str(i): n for i, n in poller["seen"].items()}}
                    for username, poller in self.pollers.items()
                },
            }

    def write(self, path):
        tmp = f"{path}.tmp"
        with open(tmp, "w") as out:
            json.dump(self.as_json(), out)
        os.replace(tmp, path)


def output_path(base, pid):
    """The file one Locust process writes its recording to."""
    return f"{base}.{pid}.json"


recorder = Recorder()
