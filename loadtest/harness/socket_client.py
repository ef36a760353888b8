"""A chat user on a WebSocket whose every connection, post, delivery and presence frame goes into the history.

The client is websocket-client (synchronous, thread-safe for one reader and
one writer, and what Locust's own documentation uses for WebSockets). It
logs in with a bearer token (/api/token: no cookie, no CSRF), connects to
`/ws/rooms/<room>/` with an allowed `Origin`, and records (history.py's
"op" events, `node` the instance holding the socket, from its `hello`):

- `connect`: invoked at the attempt; ok with value {"after"} once the
  `hello` frame came, failed with the HTTP status or close code, unknown
  when the connection broke first;
- `post`: value {"room", "client_id", "text"}; ok with {"room",
  "client_id", "id"} at its ack (the HTTP posts' shape, and the
  client_id), unknown while unacknowledged (a post still pending when its
  socket drops is sent again with its client_id after the reconnect, and
  so keeps its one op; the site stores it once);
- `receive`: one per `message` frame, at its arrival: {"id", "prev",
  "author", "client_id", "held" (taken into the client's chain: shown),
  "connection" (the how-manieth socket of this user)};
- `presence-read`: one per `presence` frame: the usernames online;
- `disconnect`: when a socket closed: {"code", "by"}: "server" (closed
  by the server, or broken without a close frame: 1006), "client" (the
  client closed it to resume after a gap) or "end" (the run stopped).

With `resume`, a frame whose `prev` is not the last id held is a gap: the
client closes the socket and reconnects with `?after=<last contiguous id>`
at once; a dropped socket reconnects the same way. Without it, a dropped
socket reconnects without `after` (live messages only) and a gap stays.
A `leaver` never reconnects: it stands for a closed browser tab, whose
presence must lapse (ghost seconds).
"""

import json
import struct
import threading
import time
import uuid

import requests
import websocket

from loadtest.harness.accounts import PASSWORD

OPEN_TIMEOUT = 10  # seconds for a handshake and its hello
BACKOFF = (0.1, 2.0)  # first and longest wait between reconnect attempts


class SocketChatter:
    """One user in `room` at `url` (HAProxy or an instance), recording into `history`."""

    def __init__(self, history, url, name, room, *, resume=True, leaver=False, held=None):
        self.history, self.url, self.name, self.room = history, url.rstrip("/"), name, room
        self.resume, self.leaver = resume, leaver
        self.token = None
        self.ws = None
        self.node = None  # the instance holding the socket now
        # The last contiguous id held: `held` (0 for a room new to this user: every message is to be held),
        # or None: the first message received starts the chain.
        self.last = held
        self.pending = {}  # client_id -> (op id, text): posts sent and not acknowledged
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.quiet = threading.Event()  # set: post no more
        self.closing = False  # the client is closing its socket to resume
        self.gone = False  # a leaver whose socket dropped
        self.connections = 0  # sockets opened so far
        self.acked = None  # called with the seconds from post to ack, if set (Locust's statistics)

    def log_in(self):
        """A bearer token for this user; RuntimeError if the site refuses."""
        answer = requests.post(f"{self.url}/api/token", json={"username": self.name, "password": PASSWORD},
                               timeout=10)
        if answer.status_code != 200:
            raise RuntimeError(f"{self.name}: /api/token answered {answer.status_code}")
        self.token = answer.json()["token"]

    def connect(self):
        """Open a socket (with ?after when resuming and an id is held); True once its hello came."""
        after = self.last if self.resume and self.last is not None else None
        op = self.history.invoke(self.name, "connect", None, {"after": after})
        ws = websocket.WebSocket(enable_multithread=True)
        try:
            ws.connect(f"{self.url.replace('http', 'ws', 1)}/ws/rooms/{self.room}/"
                       + (f"?after={after}" if after is not None else ""),
                       header=[f"Authorization: Bearer {self.token}"], origin=self.url, timeout=OPEN_TIMEOUT)
            hello = json.loads(ws.recv())
        except websocket.WebSocketBadStatusException as refused:
            self.history.complete(op, "failed", refusal=str(refused.status_code), keep_value=True)
            return False
        except websocket.WebSocketConnectionClosedException:
            self.history.complete(op, "failed", refusal="closed before its hello", keep_value=True)
            return False
        except (OSError, websocket.WebSocketException, ValueError):
            ws.abort()
            self.history.complete(op, "unknown", keep_value=True)
            return False
        if hello.get("type") != "hello":
            ws.close()
            self.history.complete(op, "failed", refusal="no hello", keep_value=True)
            return False
        ws.settimeout(None)
        self.node = hello["instance"]
        self.connections += 1
        self.history.complete(op, "ok", value={"after": after, "node": self.node})
        self.ws = ws
        return True

    def run(self, interval):
        """Read frames, reconnect and (unless interval is None) post every `interval` seconds, until stop()."""
        poster = threading.Thread(target=self._posting, args=(interval,), daemon=True)
        if interval is not None:
            poster.start()
        delay = BACKOFF[0]
        while not self.stopped.is_set() and not self.gone:
            if self.ws is None and not self.connect():
                self.stopped.wait(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            delay = BACKOFF[0]
            self._resend()
            self._read()
        if interval is not None:
            poster.join()

    def catch_up(self, through, timeout):
        """Post no more; with resume, reconnect with ?after=<last held> and wait until message `through` is held.

        The end of a run: a resuming client fills what it missed, however it
        missed it. True when held within timeout (or without resume).
        """
        self.quiet.set()
        if not self.resume or self.gone:
            return True
        with self.lock:
            self.closing = True
            if self.ws is not None:
                self.ws.abort()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last is not None and self.last >= through:
                return True
            self.stopped.wait(0.05)
        return False

    def stop(self):
        self.stopped.set()
        with self.lock:
            ws = self.ws
        if ws is not None:
            ws.abort()

    def post(self, text):
        """Send a post (a new client_id) on the open socket; nothing when none is open (no op)."""
        client_id = str(uuid.uuid4())
        with self.lock:
            if self.ws is None:
                return
            op = self.history.invoke(self.name, "post", self.node, {"room": self.room, "client_id": client_id,
                                                                     "text": text})
            self.pending[client_id] = (op, text)
            self._send(client_id, text)

    def _send(self, client_id, text):
        try:
            self.ws.send(json.dumps({"type": "post", "text": text, "client_id": client_id}))
        except (OSError, websocket.WebSocketException):
            pass  # the reader sees the socket gone; the post stays pending

    def _resend(self):
        with self.lock:
            for client_id, (_, text) in self.pending.items():
                self._send(client_id, text)

    def _posting(self, interval):
        number = 0
        while not self.stopped.wait(interval):
            if self.gone:
                return
            if self.quiet.is_set():
                continue
            number += 1
            self.post(f"{self.name} {number}")

    def _read(self):
        """Handle frames until the socket closes; then record the disconnect and drop the socket."""
        code, by = 1006, "server"
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT and self._frame(json.loads(data)) == "gap":
                    code, by = 1000, "client"
                    break
        except (OSError, websocket.WebSocketException, ValueError):
            if self.stopped.is_set():
                code, by = 1000, "end"
            elif self.closing:
                code, by = 1000, "client"
        with self.lock:
            ws, self.ws, self.closing = self.ws, None, False
        try:
            if by == "client":
                ws.close(timeout=1)  # a gap: a clean close, then the resume
        except (OSError, websocket.WebSocketException):
            pass
        ws.abort()
        op = self.history.invoke(self.name, "disconnect", self.node, {"code": code, "by": by})
        self.history.complete(op, "ok", keep_value=True)
        if by == "server" and self.leaver:
            self.gone = True

    def _frame(self, frame):
        kind = frame.get("type")
        if kind == "message":
            return self._message(frame)
        if kind == "ack":
            with self.lock:
                op, _ = self.pending.pop(frame["client_id"], (None, None))
            if op is not None:
                done = self.history.complete(op, "ok", value={"room": self.room, "client_id": frame["client_id"],
                                                              "id": frame["id"]})
                if self.acked:
                    self.acked(done["completed"] - done["invoked"])
        elif kind == "presence":
            op = self.history.invoke(self.name, "presence-read", self.node)
            self.history.complete(op, "ok", value=sorted(frame["online"]))
        return None

    def _message(self, frame):
        placed = self._place(frame)
        value = {**{key: frame[key] for key in ("id", "prev", "author", "client_id")},
                 "held": placed == "held", "connection": self.connections}
        op = self.history.invoke(self.name, "receive", self.node, value)
        self.history.complete(op, "ok", keep_value=True)
        return "gap" if placed == "gap" else None

    def _place(self, frame):
        """held (the next in the room's chain, or any new one without resume), duplicate, or gap."""
        if self.last is None or (frame["prev"] or 0) == self.last:
            self.last = frame["id"]
            return "held"
        if frame["id"] <= self.last:
            return "duplicate"
        if self.resume:
            return "gap"
        self.last = frame["id"]  # without resume the gap stays: go on from here
        return "held"
