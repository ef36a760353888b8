"""Chat users for Locust: `locust -f loadtest/locustfiles/journeys.py --host http://127.0.0.1:8000`.

A user logs in (or signs up) once, joins a room, then loops once a second: polls the
room's messages with its own cursor, heartbeats presence every few seconds,
checks /api/me, and now and then posts a message with a fresh client_id.
With LOADTEST_STAY="LOW,HIGH" (seconds) a user leaves after a random stay
in that range and a new one, with no cookies, arrives in its place: a
population that turns over while its size stays the same.

With LOADTEST_ACCOUNTS (the experiments set it) the users exist beforehand
(loadtest/harness/accounts.py): it says their names' prefix and how many each
Locust process may use, and each user logs in. Signed up over HTTP, all of
them, coming from this machine, would meet the site's per-address sign-up
limit. Without it (Locust by hand, or in Kubernetes) each user signs up.

A user that was logged in and suddenly gets 401 has lost its session: that
is counted as its own row, "session lost", apart from HTTP failures; the
user logs in again and goes on.

In the store-fault experiments (LOADTEST_SESSION_WRITES=1) a user also
writes a counter and its room into its own session on every tick, and
keeps a ledger of what the site acknowledged (loadtest/harness/sessions.py); in
the seconds LOADTEST_LOGIN_BURST names ("start,end", Unix time) around the
fault, users log in afresh, so that logins land where a store can lose them.
"""

import itertools
import os
import random
import secrets
import time
from urllib.parse import urlencode

from locust import FastHttpUser, between, events, task

from loadtest.harness.accounts import locust_name
from loadtest.harness.recorder import output_path, recorder
from loadtest.harness.site import (
    COUNTER,
    CSRF_COOKIE,
    LOGIN,
    ME,
    SIGNUP,
    login_form,
    messages_path,
    new_message,
    presence_path,
    signup_form,
)

ROOMS = [f"room{n}" for n in range(int(os.environ.get("LOADTEST_ROOMS", "4")))]
HEARTBEAT_EVERY = 5  # ticks of one second, as the site's page does
ME_EVERY = 5
POST_CHANCE = 1 / 8
SESSION_WRITES = os.environ.get("LOADTEST_SESSION_WRITES") == "1"
LOGIN_BURST = tuple(map(float, os.environ["LOADTEST_LOGIN_BURST"].split(","))) \
    if os.environ.get("LOADTEST_LOGIN_BURST") else None
BURST_CHANCE = 1 / 2  # of a tick inside the burst: a fresh login
STAY = [float(s) for s in os.environ["LOADTEST_STAY"].split(",")] if os.environ.get("LOADTEST_STAY") else None
ACCOUNTS_PREFIX, _, ACCOUNTS_PER_PROCESS = os.environ.get("LOADTEST_ACCOUNTS", "").partition(",")
_numbers = itertools.count()


class ChatUser(FastHttpUser):
    # About once a second, with jitter: users that tick in step would hit the
    # site in bursts, and the latency would measure the bursts.
    wait_time = between(0.75, 1.25)

    def on_start(self):
        number = next(_numbers)
        self.username = self._prepared_name(number) if ACCOUNTS_PREFIX else \
            f"u{os.getpid()}x{number}{secrets.token_hex(2)}"
        self.room = ROOMS[number % len(ROOMS)]
        self.cursor = None
        self.online, self.presence_version = set(), None  # the room as the server last told it
        self.ticks = random.randrange(HEARTBEAT_EVERY)
        self.pending = None  # a message not acknowledged yet: retried with its client_id
        self.counter = 0  # the last value this user tried to write into its session
        self.leaves_at = time.monotonic() + random.uniform(*STAY) if STAY else None
        self.logged_in = self._log_in() if ACCOUNTS_PREFIX else self._sign_up()
        recorder.join(self.room, self.username)

    def on_stop(self):
        recorder.leave(self.room, self.username)

    @task
    def tick(self):
        if self.leaves_at and time.monotonic() > self.leaves_at and not self.pending:
            self._replaced()
            return
        if not self.logged_in:
            self.logged_in = self._log_in()
            return
        if LOGIN_BURST and LOGIN_BURST[0] <= time.time() < LOGIN_BURST[1] and random.random() < BURST_CHANCE:
            recorder.session_left(self.username)
            self.client.cookiejar.clear()
            self.logged_in = self._log_in()
            return
        self.ticks += 1
        self._poll()
        if self.logged_in and SESSION_WRITES:
            self._write_session()
        if self.logged_in and self.ticks % HEARTBEAT_EVERY == 0:
            self._heartbeat()
        if self.logged_in and self.ticks % ME_EVERY == 2:
            self._call("GET", ME, ME)
        if self.logged_in and (self.pending or random.random() < POST_CHANCE):
            self._post()

    # Journeys

    def _replaced(self):
        """Leave, and let a newcomer without cookies take this user's place."""
        self.on_stop()
        self.client.cookiejar.clear()
        self.on_start()

    def _poll(self):
        path = messages_path(self.room) if self.cursor is None else messages_path(self.room, after=self.cursor,
                                                                                   limit=100)
        body = self._call("GET", path, messages_path("[room]"))
        if body and body.get("cursor") is not None:
            recorder.polled(self.username, self.room, after=self.cursor,
                            ids=[m["id"] for m in body["messages"]], cursor=body["cursor"])
            self.cursor = body["cursor"]

    def _heartbeat(self):
        since = "" if self.presence_version is None else f"?since={self.presence_version}"
        body = self._call("POST", presence_path(self.room) + since, presence_path("[room]"))
        if body:
            if "online" in body:
                self.online = set(body["online"])
            for op, username in body.get("changes", ()):
                (self.online.add if op == "+" else self.online.discard)(username)
            self.presence_version = body["version"]
            recorder.presence(self.room, self.online)

    def _post(self):
        if self.pending is None:
            self.pending = new_message(f"hello from {self.username}")
        body = self._call("POST", messages_path(self.room), messages_path("[room]"), json=self.pending)
        if body:
            recorder.acknowledged_message(self.pending["client_id"], self.room)
            self.pending = None

    def _write_session(self):
        self.counter += 1
        body = self._call("POST", COUNTER, COUNTER, json={"counter": self.counter, "room": self.room})
        if body:
            recorder.session_written(self.username, self.counter, body.get("previous"), self._cookies())

    def _prepared_name(self, number):
        if number >= int(ACCOUNTS_PER_PROCESS):
            raise RuntimeError(f"no prepared user left for user {number} of this process (LOADTEST_ACCOUNTS="
                               f"{os.environ['LOADTEST_ACCOUNTS']!r}); see loadtest/harness/accounts.py")
        return locust_name(ACCOUNTS_PREFIX, self.environment.runner.worker_index, number)

    def _sign_up(self):
        self._form_page(SIGNUP)
        return self._logged_in(self._submit(SIGNUP, signup_form(self.username)))

    def _log_in(self):
        self._form_page(LOGIN)
        return self._logged_in(self._submit(LOGIN, login_form(self.username)))

    def _logged_in(self, acknowledged):
        if acknowledged:
            recorder.login_acknowledged(self.username, self._cookies())
        return acknowledged

    # HTTP

    def _cookies(self):
        return {c.name: c.value for c in self.client.cookiejar}

    def _csrf_token(self):
        return next((c.value for c in self.client.cookiejar if c.name == CSRF_COOKIE), "")

    def _form_page(self, path):
        with self.client.get(path, name=path, catch_response=True, allow_redirects=False) as response:
            self._record(response, ok=response.status_code == 200)

    def _submit(self, path, fields):
        """Post a form; success is the redirect that follows a login, never a page."""
        body = urlencode({**fields, "csrfmiddlewaretoken": self._csrf_token()})
        with self.client.post(
            path, data=body, name=path, catch_response=True, allow_redirects=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            return self._record(response, ok=response.status_code == 302)

    def _call(self, method, path, name, json=None):
        """Call the API; return its JSON body, or None on failure or a lost session."""
        headers = {"X-CSRFToken": self._csrf_token()} if method != "GET" else {}
        with self.client.request(
            method, path, name=name, json=json, headers=headers, catch_response=True,
            allow_redirects=False,
        ) as response:
            if response.status_code == 401:
                response.success()
                self._record(response, ok=True)
                self._session_lost()
                return None
            if self._record(response, ok=response.status_code in (200, 201)):
                return response.json()
        return None

    def _record(self, response, *, ok):
        if ok:
            response.success()
        else:
            response.failure(f"HTTP {response.status_code}" if response.status_code else "no response")
        recorder.request(
            latency_ms=response.request_meta["response_time"],
            failed=not ok,
            served_by=response.headers.get("X-Served-By") if response.headers else None,
            kind=str(response.status_code or "connection"),
            started=response.request_meta.get("start_time"),
        )
        return ok

    def _session_lost(self):
        self.logged_in = False
        recorder.session_lost(self.username)
        self.environment.events.request.fire(
            request_type="SESSION", name="session lost", response_time=0, response_length=0,
            exception=None, context={},
        )


@events.quitting.add_listener
def _write_recording(environment, **kwargs):
    if os.environ.get("LOADTEST_OUTPUT"):
        recorder.write(output_path(os.environ["LOADTEST_OUTPUT"], os.getpid()))

