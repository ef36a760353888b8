"""The load: users made beforehand, each in a loop of recorded operations (client.py), newcomers logging in.

Jepsen's generator for the partition experiments: every user writes its
session counter every TICK (and heartbeats, or reads before each write),
a newcomer logs in at each instance every LOGIN_EVERY ticks, and after the
fault every user's session is read back once through HAProxy. Each
request is an operation in the run's history; nothing is counted here.
"""

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loadtest.harness.accounts import prepare
from loadtest.harness.client import User

# Every limit as the site ships it: the users exist beforehand (accounts()).
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}
TICK = 0.25  # seconds between a user's session writes
HEARTBEAT_EVERY = 4  # ticks
LOGIN_EVERY = 8  # ticks: a new user logs in at each instance this often
# Per scenario of split-brain and fate, besides its --seconds: a cluster up and down, the waits, the final reads.
SCENARIO_SETUP_SECONDS = 60


def accounts(state_dir, nodes, *, users, newcomer_seconds):
    """{node: an iterator of names}, users made beforehand (loadtest/harness/accounts.py) for each node.

    Enough for `users` users and a newcomer every TICK * LOGIN_EVERY for
    newcomer_seconds; a node that runs out makes no more newcomers. Made
    beforehand because every user comes from this machine: signed up over
    HTTP they would meet the site's per-address sign-up limit.
    """
    per_node = users + math.ceil(newcomer_seconds / (TICK * LOGIN_EVERY))
    names = prepare(per_node * len(nodes), state_dir=state_dir)
    return {node: iter(names[n * per_node:(n + 1) * per_node]) for n, node in enumerate(nodes)}


def users(history, urls, names, per_node):
    """per_node users at each node of urls ({node: url}), logged in; RuntimeError if any could not."""
    made = [User(history, node, url, next(names[node])) for node, url in urls.items() for _ in range(per_node)]
    with ThreadPoolExecutor(len(made)) as pool:
        signed = list(pool.map(lambda u: u.log_in(), made))
    if not all(signed):
        raise RuntimeError(f"{signed.count(False)} of {len(made)} users could not log in before the fault")
    return made


def writing(user, stop):
    """Write the next counter every tick, and heartbeat every HEARTBEAT_EVERY ticks, until stop."""
    ticks = 0
    while not stop.is_set():
        ticks += 1
        user.write()
        if ticks % HEARTBEAT_EVERY == 0:
            user.heartbeat()
        stop.wait(TICK)


def checking(user, stop):
    """Read the session, then write the next counter: a read lower than an acknowledged write shows a loss."""
    while not stop.is_set():
        user.read()
        user.write()
        stop.wait(TICK)


class Load:
    """Every user's loop and a newcomer per node while `names` (accounts()) last, from `with` until stop().

    newcomers: a list the newcomers who logged in are added to (for the final reads).
    """

    def __init__(self, history, users, urls, names, newcomers, *, loop=writing):
        self.history, self.users, self.urls, self.names = history, users, urls, names
        self.newcomers, self.loop = newcomers, loop

    def __enter__(self):
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(len(self.users) + len(self.urls))
        self.loops = [self.pool.submit(self.loop, user, self.stopped) for user in self.users]
        self.loops += [self.pool.submit(self._newcomers, node, url) for node, url in self.urls.items()]
        return self

    def stop(self):
        self.stopped.set()
        for loop in self.loops:
            loop.result()

    def __exit__(self, *failure):
        self.stopped.set()
        self.pool.shutdown(wait=True)

    def _newcomers(self, node, url):
        for name in self.names[node]:
            if self.stopped.wait(TICK * LOGIN_EVERY):
                return
            user = User(self.history, node, url, name)
            if user.log_in():
                self.newcomers.append(user)


def final_reads(users, *, through, presence):
    """Read every user's session back through HAProxy after the fault; and, for presence, who is online."""
    listed = not presence
    for user in users:
        if user.read("final-read", url=through, node="haproxy") is not None and not listed:
            listed = user.online(through, "haproxy") is not None


def settle(*, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def wait(history, name, condition, seconds):
    """When condition() first held, recorded as the sample condition=name; None if not within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return history.sample(condition=name)
        time.sleep(0.2)
    return None
