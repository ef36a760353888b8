"""The control room's load: the harness's users (loadtest/harness/client.py), each in a thread, through HAProxy.

Each user logs in, then every TICK reads its session back (the poll) and
writes the next counter into it, and heartbeats every HEARTBEAT_EVERY
ticks (the harness's loop, loadtest/harness/load.py); one of them reads
who is online every PRESENCE_EVERY seconds. Every request is an operation
in the run's history, with the instance that served it as its node. The
load can be resized while it runs; when it stops, every user's session is
read back once through HAProxy, and the counters become the harness's
checkers' figures over the load's operations.

The bound: at most MAX_USERS users, each a thread of this process making
about 9 requests a second, so that the control room stays one ordinary
process beside the cluster it watches.
"""

import threading

from loadtest.harness import checkers
from loadtest.harness.client import User
from loadtest.harness.load import HEARTBEAT_EVERY, TICK, accounts

MAX_USERS = 100
PRESENCE_EVERY = 1.0  # seconds between two reads of who is online


class Load:
    """Users of the cluster at `url` (state folder `state_dir`), recorded into `history` (a LiveHistory)."""

    def __init__(self, history, *, url, state_dir):
        self.history, self.url, self.state_dir = history, url, state_dir
        self.running = []  # (User, its stop Event, its thread), in the order they started
        self.everyone = []  # every user this load started, stopped or not: each one's session is read back
        self.stopped = threading.Event()
        self.started = history.now()
        history.count_from(self.started)
        self.watcher = threading.Thread(target=self._presence, name="load presence", daemon=True)
        self.watcher.start()

    @property
    def users(self):
        return len(self.running)

    def resize(self, users):
        """Run `users` users: new ones log in (made in the cluster's database first), the last ones stop."""
        if users > len(self.running):
            names = accounts(self.state_dir, ["haproxy"], users=users - len(self.running), newcomer_seconds=0)
            for name in names["haproxy"]:
                user = User(self.history, "haproxy", self.url, name, served_by=True)
                stop = threading.Event()
                thread = threading.Thread(target=_loop, args=(user, stop), name=f"load {name}", daemon=True)
                self.running.append((user, stop, thread))
                self.everyone.append(user)
                thread.start()
        while len(self.running) > users:
            _, stop, thread = self.running.pop()
            stop.set()
            thread.join()

    def stop(self):
        """Stop every user, read every session back, and settle the counters by the checkers; return them.

        Once: a second call returns the same figures.
        """
        if self.stopped.is_set():
            return self.history.tally.final
        self.resize(0)
        self.stopped.set()
        self.watcher.join()
        final = self.history.now()
        for user in self.everyone:
            user.read("final-read", node="haproxy")
        if self.everyone:
            self.everyone[0].online(self.url, "haproxy")
        # The load's operations; of the presence reads, only the one after the final reads (the checker
        # reads the first it is given).
        figures = final_figures([e for e in self.history.events() if e["type"] == "op" and e["invoked"] >= self.started
                                 and (e["what"] != "presence-read" or e["invoked"] >= final)])
        self.history.tally.final = figures
        return figures

    def _presence(self):
        while not self.stopped.wait(PRESENCE_EVERY):
            running = list(self.running)
            if running:
                running[0][0].online(self.url, "haproxy")


def _loop(user, stop):
    if not user.log_in():
        return
    ticks = 0
    while not stop.is_set():
        ticks += 1
        user.read()
        user.write()
        if ticks % HEARTBEAT_EVERY == 0:
            user.heartbeat()
        stop.wait(TICK)


def final_figures(events):
    """The counters of a stopped load, by the harness's checkers, over its events (final reads included)."""
    heartbeaters = {op["who"] for op in checkers.ops(events, "heartbeat", "ok")}
    return {
        "failed": sum(checkers.refusals(events).values()) + checkers.unknown(events),
        "sessions_lost": len(checkers.sessions_lost(events)),
        "writes_acked": len(checkers.ops(events, "write", "ok")),
        "writes_lost": len(checkers.lost_writes(events)),
        "presence_accuracy": round(1 - len(checkers.presence_lost(events)) / len(heartbeaters), 3)
        if heartbeaters else None,
    }
