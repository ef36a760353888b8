"""A run's history kept live: every event also held in memory for the page's stream, and tallied as it is written.

The history file is the harness's (loadtest/harness/history.py, schema 1),
so a control-room run can be rechecked like any experiment's. Beside the
file, LiveHistory keeps each line in memory (GET /api/events streams them)
and hands each event to a Tally, which keeps the figures the page shows at
a cost per event that does not grow with the run: the rates over the last
WINDOW seconds, and the counters since the load started. When the load
stops, the load replaces the tally's counters by the harness's checkers'
figures over the whole load (control/load.py), so what the page ends on is
what `recheck` would compute.
"""

import json
from collections import defaultdict, deque

from loadtest.harness.checkers import GONE
from loadtest.harness.history import History

WINDOW = 5.0  # seconds: rates, percentiles and each instance's share are over the last WINDOW
PRESENCE_FRESH = 10.0  # seconds: a user counts as online for presence when it heartbeat this recently
KEPT = 50_000  # lines of history kept in memory for the event stream, at least (about 10 MB)


class LiveHistory(History):
    """A History whose lines are also kept in memory (the last KEPT of them), each event tallied as it is written.

    lines_from(n) gives the lines from the n-th on (0: the header); a
    reader that fell more than KEPT lines behind skips to the oldest kept.
    The tally is read and restarted under the history's own lock, so a
    reader never sees it half-updated by a user's thread.
    """

    def __init__(self, path, *, experiment, command):
        self._lines, self._dropped = [], 0
        self.tally = Tally()
        self.faults = {}  # id: the fault event, as it moves on
        super().__init__(path, experiment=experiment, command=command)

    def fault(self, action, target):
        event = super().fault(action, target)
        self.faults[event["id"]] = event
        return event

    def action(self, name, **fields):
        """A request of the page's that is no fault (up, down, load), as a sample with an id; returns the id."""
        event = {"type": "sample", "id": next(self._ids), "scenario": self.scenario, "at": self.now(),
                 "action": name, **fields}
        self._write(event)
        return event["id"]

    def lines_from(self, n):
        """(the lines from the n-th on, the number of the line after them)."""
        with self._lock:
            start = max(n, self._dropped)
            return self._lines[start - self._dropped:], self._dropped + len(self._lines)

    def count_from(self, since):
        with self._lock:
            self.tally.restart(since)

    def figures(self):
        """The tally's figures now, and each node's share of the requests of the last WINDOW seconds."""
        with self._lock:
            return self.tally.figures(self.now()), self.tally.shares()

    def _write(self, event):
        line = json.dumps(event, separators=(",", ":"))
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()
            self._lines.append(line)
            if len(self._lines) > 2 * KEPT:
                del self._lines[:KEPT]
                self._dropped += KEPT
            self.tally.add(event)


class Tally:
    """The page's figures, kept up to date one event at a time (the conventions of loadtest/harness/checkers.py).

    Counters count the operations invoked since `since` (the load's start).
    A user's session is lost once a read of it was refused as gone (401);
    an acknowledged session write is lost once a read of the same user,
    invoked after the write was acknowledged, saw a lower counter or no
    session. Acknowledged writes also count the acknowledged posts; a post
    is settled by the read-back of its room when the load stops (a
    "final-poll"), lost unless that holds it. What pollers missed or saw
    twice is known only then, from the checkers (None until the load stops).
    """

    def __init__(self):
        self.restart(float("inf"))

    def restart(self, since):
        """Count from `since` (seconds on the run's clock) on; forget what came before."""
        self.since = since
        self.recent = deque()  # (completed, node, milliseconds, ok) of the last WINDOW seconds
        self.failed = self.acked = self.lost = 0
        self.logged_in, self.gone = set(), set()
        self.pending = defaultdict(list)  # user: [(counter, completed)] acknowledged, not yet seen lost
        self.posts = defaultdict(list)  # room: [((id, client_id), completed)] acknowledged, not yet read back
        self.heartbeats = {}  # user: when its last acknowledged heartbeat completed
        self.presence = None  # the share of fresh heartbeaters the last presence read listed
        self.final = None  # the checkers' figures, once the load has stopped

    def add(self, event):
        if event["type"] != "op" or event["invoked"] < self.since or event["completed"] is None:
            return
        ok = event["outcome"] == "ok"
        self.recent.append((event["completed"], event["node"], 1000 * (event["completed"] - event["invoked"]), ok))
        self.failed += not ok
        who, what = event["who"], event["what"]
        if what == "login" and ok:
            self.logged_in.add(who)
        elif what == "write" and ok:
            self.acked += 1
            self.pending[who].append((event["value"], event["completed"]))
        elif what in ("read", "final-read") and (ok or event["refusal"] == GONE):
            self._seen(who, event["invoked"], event["value"] if ok else None, gone=not ok)
        elif what == "post" and ok:
            self.acked += 1
            self.posts[event["value"]["room"]].append(((event["value"]["id"], event["value"]["client_id"]),
                                                       event["completed"]))
        elif what == "final-poll" and ok:  # one that failed settles nothing: its posts stay unconfirmed
            self._read_back(event["value"]["room"], event["invoked"], {(i, c) for i, c in event["value"]["messages"]})
        elif what == "heartbeat" and ok:
            self.heartbeats[who] = event["completed"]
        elif what == "presence-read" and ok:
            fresh = {user for user, at in self.heartbeats.items() if event["invoked"] - at <= PRESENCE_FRESH}
            self.presence = round(len(fresh & set(event["value"] or ())) / len(fresh), 3) if fresh else None

    def _seen(self, who, invoked, counter, *, gone):
        """A read invoked at `invoked` saw `counter` (gone: no session at all): count the writes it shows lost.

        A user writes one after another, so its pending writes are in the
        order of both their counters and their completion: the writes a read
        shows lost are a run at the end, before the few still in flight when
        it began; the scan stops at the first write the read saw, which
        keeps the cost per read small however long the load runs.
        """
        if gone:
            self.gone.add(who)
        pending, in_flight = self.pending[who], []
        while pending and pending[-1][1] > invoked:
            in_flight.append(pending.pop())
        while pending and (counter is None or pending[-1][0] > counter):
            pending.pop()
            self.lost += 1
        pending.extend(reversed(in_flight))

    def _read_back(self, room, invoked, held):
        """A read-back of `room` invoked at `invoked` held `held`: the posts acknowledged before it are settled."""
        unsettled = []
        for message, completed in self.posts[room]:
            if completed > invoked:
                unsettled.append((message, completed))
            elif message not in held:
                self.lost += 1
        self.posts[room] = unsettled

    def figures(self, now):
        """The load's figures at `now`: rates over the last WINDOW seconds, counters since the start."""
        while self.recent and self.recent[0][0] < now - WINDOW:
            self.recent.popleft()
        took = sorted(ms for _, _, ms, _ in self.recent)
        counters = self.final or {
            "failed": self.failed, "sessions_lost": len(self.gone & self.logged_in), "writes_acked": self.acked,
            "writes_lost": self.lost, "presence_accuracy": self.presence,
            "messages_missed": None, "messages_seen_twice": None, "sessions_unconfirmed": None,
            "writes_unconfirmed": None}
        return {"rps": round(len(took) / WINDOW, 1), "p50_ms": _percentile(took, 50),
                "p99_ms": _percentile(took, 99), **counters}

    def shares(self):
        """Each node's share of the operations completed in the last WINDOW seconds (after figures())."""
        served = defaultdict(int)
        for _, node, _, _ in self.recent:
            served[node] += 1
        total = sum(served.values())
        return {node: round(count / total, 3) for node, count in served.items()} if total else {}


def _percentile(values, percent):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * percent / 100))], 1)
