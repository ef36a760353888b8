"""One history of a run: every operation, fault and sample on one clock, as JSON lines flushed per event.

The file's first line is the header, {"type": "header", "schema": 1,
"experiment", "command", "started" (UTC, ISO 8601)}; every later line is one
event. Every time in an event is seconds on a monotonic clock since the
run's start (the header's "started"), so events from threads and from
faults compare directly; to the millisecond, or to the microsecond in a
run whose operations last about a millisecond (quorum: its header says
"digits": 6), so that "acknowledged before this read began" is decided by
the clock, not by rounding. Schema 1:

- "op": one operation of a client, written when it ends. "who" (the user),
  "what" (the kind: login, write, read, heartbeat, final-read, presence-read,
  post, poll),
  "node" (the instance or proxy that served it), "invoked", "completed"
  (null: it never completed before the run ended), "outcome" ("ok",
  "failed": refused, or "unknown": a timeout or a lost connection, which may
  have taken effect, or one that never completed), "value" (what was
  written or read), "refusal" (why it failed: an HTTP status or "refused").
- "fault": one fault the run injected, written again each time it moves on
  (a reader keeps the last line of each "id"): "action", "target", "sent",
  "effect" (when it took effect), "ended" (null while it lasts).
- "sample": what the run observed at "at": "roles" (each store node's
  role), "haproxy" (its view of each instance), "cpu" (cumulative CPU
  seconds of the lab's processes and of the machine: observe.py), or
  "condition" (the name of a condition the run waited for, first seen to
  hold at "at"), or an experiment's own observation.

Every event also names its "scenario" when the run has several. Writing is
thread-safe and each line is flushed as it is written, so another process
can follow a run live by reading the file as it grows.
"""

import itertools
import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = 1
FILE = "history.jsonl"
OUTCOMES = ("ok", "failed", "unknown")


class History:
    """A history being recorded into `path`; `scenario` tags every event from when it is set.

    digits: the decimals of every time it records (3: milliseconds).
    """

    def __init__(self, path, *, experiment, command, digits=3):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.digits = digits
        self.scenario = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open = {}
        self._file = self.path.open("w")
        self._write({"type": "header", "schema": SCHEMA, "experiment": experiment, "command": command,
                     "started": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "digits": digits})

    def now(self):
        """Seconds since the run's start, on the monotonic clock every event uses."""
        return round(time.monotonic() - self.started, self.digits)

    def invoke(self, who, what, node=None, value=None):
        """An operation starting now; end it with complete(). Returns its id."""
        op = {"type": "op", "id": next(self._ids), "scenario": self.scenario, "who": who, "what": what,
              "node": node, "invoked": self.now(), "completed": None, "outcome": "unknown", "value": value,
              "refusal": None}
        with self._lock:
            self._open[op["id"]] = op
        return op["id"]

    def complete(self, op_id, outcome, *, value=None, refusal=None, keep_value=False, node=None):
        """Write the operation as ended now with outcome; value replaces the invoked one unless keep_value.

        node: the node that served it, when only the answer tells (through a load balancer).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        with self._lock:
            op = self._open.pop(op_id)
        op.update(completed=self.now(), outcome=outcome, refusal=refusal)
        if node:
            op["node"] = node
        if not keep_value:
            op["value"] = value
        self._write(op)
        return op

    def fault(self, action, target):
        """A fault sent now: returns its event; mark it with took_effect() and ended()."""
        event = {"type": "fault", "id": next(self._ids), "scenario": self.scenario, "action": action,
                 "target": target, "sent": self.now(), "effect": None, "ended": None}
        self._write(event)
        return event

    def took_effect(self, event, at=None):
        event["effect"] = self.now() if at is None else at
        self._write(event)

    def ended(self, event):
        event["ended"] = self.now()
        self._write(event)

    def sample(self, **observed):
        """What the run observed now (roles=..., haproxy=..., cpu=..., condition=...); returns its time."""
        event = {"type": "sample", "scenario": self.scenario, "at": self.now(), **observed}
        self._write(event)
        return event["at"]

    def events(self, scenario=None):
        """The events written so far (of one scenario, if given), faults settled: read back from the file."""
        events = settled(list(read(self.path))[1:])
        return events if scenario is None else of(events, scenario)

    def close(self):
        """Write every operation still open as never completed (outcome unknown), and close the file."""
        with self._lock:
            pending, self._open = list(self._open.values()), {}
        for op in pending:
            self._write(op)
        with self._lock:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *failure):
        self.close()

    def _write(self, event):
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


def read(path):
    """Yield the file's events in order, the header first; a last line still being written is left out."""
    with Path(path).open() as lines:
        for line in lines:
            if not line.endswith("\n"):
                return
            yield json.loads(line)


def load(path):
    """(header, events) of a finished history: a fault's last line stands for it; ValueError if not schema 1."""
    events = list(read(path))
    if not events or events[0].get("type") != "header":
        raise ValueError(f"{path} does not start with a history header")
    header = events[0]
    if header.get("schema") != SCHEMA:
        raise ValueError(f"{path} has history schema {header.get('schema')}, this version reads {SCHEMA}")
    return header, settled(events[1:])


def settled(events):
    """The events with each fault's earlier lines dropped (its last line says everything)."""
    last = {event["id"]: n for n, event in enumerate(events) if event["type"] == "fault"}
    return [event for n, event in enumerate(events) if event["type"] != "fault" or last[event["id"]] == n]


def of(events, scenario):
    """The events of one scenario."""
    return [event for event in events if event.get("scenario") == scenario]


def scenarios(events):
    """{scenario: its events}, the scenarios in the order they first appear; events of none are left out."""
    split = {}
    for event in events:
        if event.get("scenario"):
            split.setdefault(event["scenario"], []).append(event)
    return split
