"""The control room's load: the harness's users (loadtest/harness/client.py), each in a thread, through HAProxy.

Each user logs in, then every TICK (0.25 s) reads its session back,
writes the next counter into it and polls the room ROOM for new messages;
it heartbeats every HEARTBEAT_EVERY ticks (1 s) and posts a message every
POST_EVERY ticks (2 s), from its first tick on. One of them reads who is
online every PRESENCE_EVERY seconds. Every request is an operation in the
run's history, with the instance that served it as its node. The load can
be resized while it runs; when it stops, every user's session is read back
once through HAProxy, and so is every message the room holds from the
load's first acknowledged post on (by the auditor of
loadtest/harness/audit.py, with a bearer token: the posts of a user who
lost the session can still be confirmed). Then the counters become the
harness's checkers' figures over the load's operations (final_figures).

The bound: at most MAX_USERS users, each a thread of this process making
about 13.5 requests a second (12 a second of reads, writes and polls, a
heartbeat a second, a post every 2 s), so that the control room stays one
ordinary process beside the cluster it watches.
"""

import threading
import time

from deploy import cluster as deploy
from loadtest.harness import checkers
from loadtest.harness.audit import AUDITOR
from loadtest.harness.client import ROOM, User
from loadtest.harness.load import HEARTBEAT_EVERY, TICK, accounts

MAX_USERS = 100
PRESENCE_EVERY = 1.0  # seconds between two reads of who is online
POST_EVERY = 8  # ticks between two posts of a user
# Seconds a bearer token is used for: half the site's default lifetime (API_TOKEN_MAX_AGE, an hour).
TOKEN_KEPT = 1800


class Load:
    """Users of the cluster at `url` (state folder `state_dir`), recorded into `history` (a LiveHistory)."""

    def __init__(self, history, *, url, state_dir):
        self.history, self.url, self.state_dir = history, url, state_dir
        self.running = []  # (User, its stop Event, its thread), in the order they started
        self.everyone = []  # every user this load started, stopped or not: each one's session is read back
        self.stopped = threading.Event()
        self.token = None  # (the auditor's bearer token, when it was taken): for the read-back
        self.first_posts = []  # each user's first acknowledged post's id: the read-back starts below the lowest
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
            if self.token is None:
                self.token = (deploy.api_token(AUDITOR, state_dir=self.state_dir), time.monotonic())
            names = accounts(self.state_dir, ["haproxy"], users=users - len(self.running), newcomer_seconds=0)
            for name in names["haproxy"]:
                user = User(self.history, "haproxy", self.url, name, served_by=True)
                stop = threading.Event()
                thread = threading.Thread(target=_loop, args=(user, stop, self.first_posts), name=f"load {name}",
                                          daemon=True)
                self.running.append((user, stop, thread))
                self.everyone.append(user)
                thread.start()
        while len(self.running) > users:
            _, stop, thread = self.running.pop()
            stop.set()
            thread.join()

    def stop(self):
        """Stop every user, read every session and the load's messages back, settle the counters; return them.

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
        self._read_back()
        # The load's operations; of the presence reads, only the one after the final reads (the checker
        # reads the first it is given).
        figures = final_figures([e for e in self.history.events() if e["type"] == "op" and e["invoked"] >= self.started
                                 and (e["what"] != "presence-read" or e["invoked"] >= final)])
        self.history.tally.final = figures
        return figures

    def _read_back(self):
        """Read the room back from before the load's first acknowledged post, as the auditor, through HAProxy.

        With the token taken when the load started (a management command:
        at the stop, a paused database could hold it for deploy's whole
        timeout, where a read times out in seconds), or a new one once that
        is TOKEN_KEPT old.
        """
        if not self.first_posts:
            return
        token, taken = self.token
        if time.monotonic() - taken > TOKEN_KEPT:
            try:
                token = deploy.api_token(AUDITOR, state_dir=self.state_dir)
            except deploy.DeployError:
                pass  # the old one may still be good: the site's lifetime is twice TOKEN_KEPT
        User(self.history, "haproxy", self.url, AUDITOR, served_by=True, token=token).read_back(
            ROOM, after=min(self.first_posts) - 1)

    def _presence(self):
        while not self.stopped.wait(PRESENCE_EVERY):
            running = list(self.running)
            if running:
                running[0][0].online(self.url, "haproxy")


def _loop(user, stop, first_posts):
    """The user's rounds until stop; its first acknowledged post's id goes into first_posts."""
    if not user.log_in():
        return
    ticks, posted = 0, None
    while not stop.is_set():
        ticks += 1
        user.read()
        user.write()
        user.poll(ROOM)
        if ticks % HEARTBEAT_EVERY == 0:
            user.heartbeat()
        if ticks % POST_EVERY == 1:  # from the first tick on: a new user's first message comes at once
            message = user.post(ROOM)
            if posted is None and message is not None:
                posted = message
                first_posts.append(posted)
        stop.wait(TICK)


def final_figures(events):
    """The counters of a stopped load, by the harness's checkers, over its events (the read-backs included).

    Acknowledged writes are session writes and posts alike, and so are
    those lost; messages_missed and messages_seen_twice are the pollers'
    (checkers.polls_missed_or_seen_twice); sessions_unconfirmed and
    writes_unconfirmed, the logins and the acknowledged session writes and
    posts that no final read or read-back could confirm or show lost (it
    failed some other way: the store down at stop).
    """
    heartbeaters = {op["who"] for op in checkers.ops(events, "heartbeat", "ok")}
    polled = checkers.polls_missed_or_seen_twice(events)
    return {
        "failed": sum(checkers.refusals(events).values()) + checkers.unknown(events),
        "sessions_lost": len(checkers.sessions_lost(events)),
        "writes_acked": len(checkers.ops(events, ("write", "post"), "ok")),
        "writes_lost": len(checkers.lost_writes(events)) + len(checkers.posts_lost(events)),
        "presence_accuracy": round(1 - len(checkers.presence_lost(events)) / len(heartbeaters), 3)
        if heartbeaters else None,
        "messages_missed": len(polled["missed"]),
        "messages_seen_twice": len(polled["seen_twice"]),
        "sessions_unconfirmed": len(checkers.sessions_unconfirmed(events)),
        "writes_unconfirmed": len(checkers.unconfirmed_writes(events)) + len(checkers.posts_unconfirmed(events)),
    }
