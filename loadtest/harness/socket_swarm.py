"""Thousands of chat WebSockets from one process, on one asyncio event loop, each arrival on one clock.

The benchmarks' client (`bench-sockets`): where the experiment's
SocketChatter (socket_client.py) spends a thread per user and records every
frame into a history, a Socket here is a coroutine reading its frames, so
that one process holds 5,000 of them. Each socket is opened with a bearer
token (`Authorization: Bearer`, from /api/token) and an `Origin` naming the
site (the handshake checks it), and counts as open only once its `hello`
came: the server put it in its room's group before it said hello
(chat/consumers.py), so a post sent after that reaches it. The client
offers permessage-deflate, as browsers do.

A Socket keeps, for each `message` frame, the time it first arrived
(`time.monotonic()`, the clock a poster's send times are taken on), the
last `presence` list it was shown, and once closed, its close code. A
handshake that fails is a Refused naming why (an HTTP status, a close code,
an OS error such as EMFILE, no hello in time), never a silent loss.
"""

import asyncio
import errno
import inspect
import json
import resource
import time
import uuid
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from loadtest.harness.accounts import PASSWORD
from loadtest.harness.site import Site

OPEN_TIMEOUT = 10  # seconds for a handshake and its hello
SPARE_FILES = 500  # open files beyond the sockets': HAProxy's own, the stores' connections, this process's


class Refused(Exception):
    """A socket that did not open; `reason` says why, in a few words."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def allow_open_files(sockets):
    """Raise this process's soft open-file limit to what `sockets` WebSockets through HAProxy need; return it.

    Call it before the cluster starts: HAProxy inherits the limit (deploy
    sizes its maxconn by it, two files per connection), and this process
    holds one file per socket. ValueError, saying what to do, when the hard
    limit is too low: a run that cannot open its sockets is refused, not
    reported as the server's failure.
    """
    needed = 2 * sockets + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ValueError(f"{sockets} sockets through HAProxy need {needed} open files (two per socket in HAProxy, "
                         f"which inherits this process's limit, and {SPARE_FILES} spare); the hard limit here is "
                         f"{hard}: raise it (as root: ulimit -Hn {needed}) or ask for fewer sockets")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return needed
    return soft


def tokens(url, names):
    """A bearer token for each user (all with the load's PASSWORD); RuntimeError naming a refusal."""
    found = []
    for name in names:
        answer = Site(url).api("POST", "/api/token", username=name, password=PASSWORD)
        if answer.status_code != 200:
            raise RuntimeError(f"{name}: /api/token answered {answer.status_code}: {answer.text[:200]!r}")
        found.append(answer.json()["token"])
    return found


class Socket:
    """One open socket in a room: the instance holding it, what it was shown, and when each message came."""

    def __init__(self, ws, node, online):
        self.ws, self.node, self.online = ws, node, online
        self.arrivals = {}  # client_id -> time.monotonic() of its first message frame
        self.duplicates = 0  # message frames of a client_id this socket had already
        self.reader = asyncio.create_task(self._read())

    @property
    def open(self):
        return not self.reader.done()

    @property
    def close_code(self):
        """The code it closed with (1006: no close frame), None while open."""
        return None if self.open else self.ws.close_code

    async def post(self, text):
        """Send a post with a new client_id; return (client_id, the monotonic time just before it was sent)."""
        client_id = str(uuid.uuid4())
        frame = json.dumps({"type": "post", "text": text, "client_id": client_id})
        sent = time.monotonic()
        await self.ws.send(frame)
        return client_id, sent

    async def _read(self):
        try:
            async for data in self.ws:
                arrived = time.monotonic()
                frame = json.loads(data)
                if frame.get("type") == "message":
                    if frame["client_id"] in self.arrivals:
                        self.duplicates += 1
                    else:
                        self.arrivals[frame["client_id"]] = arrived
                elif frame.get("type") == "presence":
                    self.online = frame["online"]
        except ConnectionClosed:
            pass  # close_code says how


async def open_socket(url, token, room):
    """A Socket in `room` at `url` (HAProxy or an instance) once its hello came; Refused otherwise."""
    try:
        ws = await connect(f"{url.replace('http', 'ws', 1)}/ws/rooms/{room}/", origin=url, proxy=None,
                           additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=OPEN_TIMEOUT)
    except InvalidStatus as refused:
        raise Refused(f"HTTP {refused.response.status_code}") from None
    except TimeoutError:
        raise Refused(f"no handshake within {OPEN_TIMEOUT} s") from None
    except OSError as failed:
        raise Refused(errno.errorcode.get(failed.errno, type(failed).__name__)) from None
    except InvalidHandshake as failed:
        raise Refused(type(failed).__name__) from None
    online = None
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            while (frame := json.loads(await ws.recv())).get("type") != "hello":
                online = frame.get("online", online)
    except ConnectionClosed as closed:
        raise Refused(f"closed {closed.rcvd.code if closed.rcvd else 1006} before its hello") from None
    except TimeoutError:
        ws.transport.abort()
        raise Refused(f"no hello within {OPEN_TIMEOUT} s") from None
    return Socket(ws, frame["instance"], online)


async def open_many(url, plan, *, batch, into):
    """Open a socket per (token, room) of `plan`, `batch` handshakes at a time, appending each to `into`.

    `into` is the caller's list, so that what opened is closed even when
    this is interrupted. Return a Counter of the refusals' reasons.
    """
    refused = Counter()
    for start in range(0, len(plan), batch):
        results = await asyncio.gather(*(open_socket(url, token, room) for token, room in plan[start:start + batch]),
                                       return_exceptions=True)
        into.extend(result for result in results if isinstance(result, Socket))
        refused.update(result.reason for result in results if isinstance(result, Refused))
        if failed := next((r for r in results if isinstance(r, BaseException) and not isinstance(r, Refused)), None):
            raise failed
    return refused


async def close_all(sockets):
    """Drop every socket at once (no closing handshake: the cluster goes down next) and end its reader."""
    for socket in sockets:
        socket.ws.transport.abort()
    for socket in sockets:
        socket.reader.cancel()
    await asyncio.gather(*(socket.reader for socket in sockets), return_exceptions=True)


async def eventually(condition, seconds, *, interval=0.02):
    """Whether condition() (a function, or a coroutine function) held within `seconds`, asked every `interval`."""
    deadline = time.monotonic() + seconds
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
