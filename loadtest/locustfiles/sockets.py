"""Chat users on a WebSocket for Locust: `locust -f loadtest/locustfiles/sockets.py --host http://127.0.0.1:8000`.

Beside the HTTP users (loadtest/journeys.py), for a cluster served by an
ASGI server (`deploy up --server uvicorn`). Each user takes a bearer token,
opens a socket in its room (LOADTEST_ROOMS rooms, default 4) through the
host, holds it, posts about once a second with a fresh client_id, and
resumes after a gap or a drop (LOADTEST_RESUME=0: it reconnects without
resuming; LOADTEST_POSTS=0: it only holds its socket). The client is websocket-client, on Locust's gevent.

Every connection, post, acknowledgement, delivery and presence frame is
an operation in a history (loadtest/harness/history.py, schema 1), one
file per Locust process, `history-<pid>.jsonl` in the folder
LOADTEST_HISTORY names; its times count from LOADTEST_HISTORY_START (a
time on the machine's monotonic clock, which every process shares) when
set, so that they line up with the experiment's own history. Posts show
in Locust's statistics as `WS post` (the time to the ack).

The users exist beforehand, as for the HTTP users: LOADTEST_ACCOUNTS
("prefix,per process", loadtest/harness/accounts.py's for_locust) names them.
"""

import itertools
import os
import time
from pathlib import Path

import gevent
from locust import User, between, events, task

from loadtest.harness.accounts import locust_name
from loadtest.harness.history import History
from loadtest.harness.socket_client import SocketChatter

ROOMS = [f"room{n}" for n in range(int(os.environ.get("LOADTEST_ROOMS", "4")))]
RESUME = os.environ.get("LOADTEST_RESUME", "1") != "0"
POSTS = os.environ.get("LOADTEST_POSTS", "1") != "0"  # 0: idle sockets, for the socket-count benchmark
ACCOUNTS_PREFIX, _, ACCOUNTS_PER_PROCESS = os.environ.get("LOADTEST_ACCOUNTS", "").partition(",")
_numbers = itertools.count()
_history = []


def history():
    """This process's history, opened on first use."""
    if not _history:
        folder = Path(os.environ.get("LOADTEST_HISTORY", "."))
        opened = History(folder / f"history-{os.getpid()}.jsonl", experiment="sockets-locust",
                         command="locust -f loadtest/locustfiles/sockets.py")
        if os.environ.get("LOADTEST_HISTORY_START"):
            opened.started = float(os.environ["LOADTEST_HISTORY_START"])
        _history.append(opened)
    return _history[0]


class SocketChatUser(User):
    wait_time = between(0.75, 1.25)

    def on_start(self):
        number = next(_numbers)
        if not ACCOUNTS_PREFIX:
            raise RuntimeError("LOADTEST_ACCOUNTS is not set: make the users first (loadtest/harness/accounts.py)")
        if number >= int(ACCOUNTS_PER_PROCESS):
            raise RuntimeError(f"no prepared user left for user {number} of this process")
        name = locust_name(ACCOUNTS_PREFIX, self.environment.runner.worker_index, number)
        self.chatter = SocketChatter(history(), self.host, name, ROOMS[number % len(ROOMS)], resume=RESUME)
        self.chatter.acked = self._acked
        self.chatter.log_in()
        self.reader = gevent.spawn(self.chatter.run, None)

    def on_stop(self):
        self.chatter.stop()
        self.reader.join(timeout=5)

    @task
    def post(self):
        if POSTS:
            self.chatter.post(f"{self.chatter.name} {time.time():.3f}")

    def _acked(self, seconds):
        self.environment.events.request.fire(request_type="WS", name="WS post", response_time=seconds * 1000,
                                             response_length=0, exception=None, context={})


@events.quitting.add_listener
def _close_history(environment, **kwargs):
    for opened in _history:
        opened.close()
