"""bench-sockets' measurements, each on a cluster of its own: idle sockets on one instance, and a room's fan-out
by push (WebSockets) beside the same messages by the room page's HTTP poll.

Every socket is opened through HAProxy by loadtest/harness/socket_swarm.py
(one process, one event loop); the instances' resident memory and CPU
seconds are read from their processes (psutil, from /proc), their open
sockets from `deploy status` (each instance's own count). Waits are bounded
polls of a condition; the only timed pauses are the load's own schedule
(posts `spacing` apart, polls POLL_SECONDS apart) and the hold, which is
what is measured.

Each measurement returns what it read, not figures: counts, memory in KiB,
CPU seconds, and every send and arrival time as seconds since `origin` (the
run's history's start, on the same monotonic clock), to the microsecond.
sockets_figures.py computes the figures from these readings, after the
history keeps them (sockets_report.py).
"""

import asyncio
import threading
import time
from functools import partial

import psutil

from deploy import cluster
from loadtest.harness.accounts import prepare
from loadtest.harness.site import Site, messages_path, new_message
from loadtest.harness.socket_swarm import close_all, eventually, open_many, tokens

IDLE_ROOM_SIZE = 10  # idle sockets per room: each join tells the whole room who is online, so one room of 5,000
# would cost 12.5 million presence frames to open, and measure presence, not idle sockets
IDLE_ACCOUNTS = 4  # the users the idle sockets belong to (a token may open any number of sockets)
COUNT_SECONDS = 60  # for the instances to count the sockets opened, or closed
SETTLE_SECONDS = 30  # for every socket of a room to be shown everyone online: the joins' presence frames are over
DELIVERY_SECONDS = 10  # after the last post, for every delivery
POLL_SECONDS = 1.0  # the room page's poll interval (POLL_MS in chat/static/chat/room.js)


def idle(deployed, *, sockets, batch, hold):
    """One instance: its memory with one socket open, then `sockets` more opened `batch` at a time and held `hold`
    seconds. The readings: asked, opened, refused and closed_while_held (counts by reason and by close code), the
    instance's own count of its sockets, its RSS before and after (KiB), the seconds they took to open."""
    keys = tokens(deployed.url, prepare(IDLE_ACCOUNTS, state_dir=deployed.state_dir))
    plan = [(keys[n % len(keys)], f"idle{n // IDLE_ROOM_SIZE}") for n in range(sockets + 1)]
    return asyncio.run(_idle(deployed, plan, batch=batch, hold=hold))


async def _idle(deployed, plan, *, batch, hold):
    opened = []
    try:
        refused = await open_many(deployed.url, plan[:1], batch=1, into=opened)
        if not opened:
            raise RuntimeError(f"idle: the first socket did not open: {dict(refused)}")
        (pid,) = [row["pid"] for row in await _instances(deployed)]
        if not await eventually(partial(_counted, deployed, 1), COUNT_SECONDS, interval=0.1):
            raise RuntimeError(f"idle: the instance did not count its first socket within {COUNT_SECONDS} s")
        before = _rss_kib(pid)
        began = time.monotonic()
        refused = await open_many(deployed.url, plan[1:], batch=batch, into=opened)
        open_seconds = time.monotonic() - began
        await eventually(partial(_counted, deployed, len(opened)), COUNT_SECONDS, interval=0.1)
        await asyncio.sleep(hold)  # holding them is what is measured
        after = _rss_kib(pid)
        closed = [socket.close_code for socket in opened[1:] if not socket.open]
        return {"asked": len(plan) - 1, "opened": len(opened) - 1, "refused": dict(refused),
                "closed_while_held": {str(code): closed.count(code) for code in set(closed)},
                "server_sockets": await _server_sockets(deployed), "rss_before_kib": before, "rss_after_kib": after,
                "open_seconds": round(open_seconds, 6)}
    finally:
        await close_all(opened)


def fanout(deployed, *, users, messages, spacing, batch, origin):
    """A room of `users` receivers and one poster: `messages` posts `spacing` seconds apart, first over a socket
    each (push), then, sockets closed, by HTTP to the same users polling as the room page does (poll).

    The readings, under "push" and "poll": each post's send time ("sent",
    in post order) and each receiver's arrival time of each post
    ("arrivals", a list per receiver in the same order, None for a post
    it never got), and the instances' CPU seconds from the first post to
    the last delivery ("cpu_seconds"); push also the instance each socket
    was opened on ("nodes"), the receivers refused ("refused", by reason)
    and the message frames a socket got twice ("duplicates"); poll the
    polls made and failed.
    """
    keys = tokens(deployed.url, prepare(users + 1, state_dir=deployed.state_dir))
    pids = [row["pid"] for row in cluster.status(deployed.state_dir)["instances"]]
    push = asyncio.run(_push(deployed, keys, pids, messages=messages, spacing=spacing, batch=batch, origin=origin))
    return {"push": push, "poll": _poll(deployed.url, keys, pids, messages=messages, spacing=spacing, origin=origin)}


def _on_clock(sent, arrivals, origin):
    """The send times in post order, and each receiver's arrival time of each post (None: never), as seconds
    since `origin` to the microsecond: `sent` {client_id: time}, `arrivals` one {client_id: time} per receiver."""
    order = list(sent)

    def since(at):
        return round(at - origin, 6)

    return {"sent": [since(sent[client_id]) for client_id in order],
            "arrivals": [[since(mine[client_id]) if client_id in mine else None for client_id in order]
                         for mine in arrivals]}


async def _push(deployed, keys, pids, *, messages, spacing, batch, origin):
    room, receivers, opened = "fanout", len(keys) - 1, []
    try:
        refused = await open_many(deployed.url, [(key, room) for key in keys[:receivers]], batch=batch, into=opened)
        listening = list(opened)
        await open_many(deployed.url, [(keys[-1], room)], batch=1, into=opened)
        if len(opened) == len(listening):
            raise RuntimeError("fan-out: the poster's socket did not open")
        poster = opened[-1]
        # Each socket is shown who is online at every join: the room has settled when every socket sees everyone.
        if not await eventually(lambda: all(len(s.online or ()) == len(opened) for s in opened), SETTLE_SECONDS):
            raise RuntimeError(f"fan-out: the room's sockets were not all shown everyone online within "
                               f"{SETTLE_SECONDS} s: the posts would race the joins' presence frames")
        before = _cpu_seconds(pids)
        sent = await _post_all(poster, messages, spacing)
        arrivals = [socket.arrivals for socket in listening]
        await eventually(lambda: all(sent.keys() <= mine.keys() for mine in arrivals), DELIVERY_SECONDS)
        cpu = _cpu_seconds(pids) - before
        readings = {"nodes": [s.node for s in listening], "refused": dict(refused), **_on_clock(sent, arrivals, origin),
                    "duplicates": sum(s.duplicates for s in listening), "cpu_seconds": cpu}
    finally:
        await close_all(opened)
    # The poll's CPU must not include the instances' work on these sockets' departure.
    if not await eventually(partial(_counted, deployed, 0), COUNT_SECONDS, interval=0.1):
        raise RuntimeError(f"fan-out: the instances still count sockets {COUNT_SECONDS} s after all closed")
    return readings


async def _post_all(poster, messages, spacing):
    """{client_id: send time} of `messages` posts, `spacing` seconds apart from the first (the load's schedule)."""
    sent, start = {}, time.monotonic()
    for number in range(messages):
        await asyncio.sleep(max(0.0, start + number * spacing - time.monotonic()))
        client_id, at = await poster.post(f"fan-out {number}")
        sent[client_id] = at
    return sent


class _Poller(threading.Thread):
    """A room page's poll: GET the room's messages after the last id held, POLL_SECONDS after each answer."""

    def __init__(self, url, token, room, wanted, stop, *, offset):
        super().__init__(daemon=True)
        self.site, self.room, self.wanted, self.stop, self.offset = Site(url, token=token), room, wanted, stop, offset
        self.arrivals = {}  # client_id -> time.monotonic() of the answer that first held it
        self.polls = self.failed = 0

    def run(self):
        cursor = 0
        self.stop.wait(self.offset)  # the pages' polls spread over the interval, as pages opened apart are
        while not self.stop.is_set() and len(self.arrivals) < self.wanted:
            self.polls += 1
            try:
                answer = self.site.request("GET", messages_path(self.room, after=cursor))
                data = answer.json() if answer.status_code == 200 else None
            except (OSError, ValueError):  # requests' errors are OSErrors; ValueError: a body not JSON
                data = None
            arrived = time.monotonic()
            if data is None:
                self.failed += 1
            else:
                for message in data["messages"]:
                    self.arrivals.setdefault(message["client_id"], arrived)
                cursor = data["cursor"] if data["cursor"] is not None else cursor
            self.stop.wait(POLL_SECONDS)


def _poll(url, keys, pids, *, messages, spacing, origin):
    """The same messages posted over HTTP to a new room, its users polling it until each holds them all."""
    room, stop = "fanout-poll", threading.Event()
    pollers = [_Poller(url, key, room, messages, stop, offset=POLL_SECONDS * n / (len(keys) - 1))
               for n, key in enumerate(keys[:-1])]
    poster, sent = Site(url, token=keys[-1]), {}
    before = _cpu_seconds(pids)
    for poller in pollers:
        poller.start()
    try:
        start = time.monotonic()
        for number in range(messages):
            stop.wait(max(0.0, start + number * spacing - time.monotonic()))
            message = new_message(f"fan-out {number}")
            sent[message["client_id"]] = time.monotonic()
            answer = poster.api("POST", messages_path(room), **message)
            if answer.status_code != 201:
                raise RuntimeError(f"poll: a post answered {answer.status_code}: {answer.text[:200]!r}")
        deadline = time.monotonic() + DELIVERY_SECONDS + POLL_SECONDS
        for poller in pollers:
            poller.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for poller in pollers:
            poller.join()
    cpu = _cpu_seconds(pids) - before
    return {**_on_clock(sent, [poller.arrivals for poller in pollers], origin), "polls": sum(p.polls for p in pollers),
            "failed_polls": sum(p.failed for p in pollers), "cpu_seconds": cpu}


async def _instances(deployed):
    return (await asyncio.to_thread(cluster.status, deployed.state_dir))["instances"]


async def _server_sockets(deployed):
    """The sockets the instances say they hold, in all; None when one does not answer."""
    counts = [row["sockets"] for row in await _instances(deployed)]
    return None if None in counts else sum(counts)


async def _counted(deployed, count):
    return await _server_sockets(deployed) == count


def _rss_kib(pid):
    return psutil.Process(pid).memory_info().rss // 1024


def _cpu_seconds(pids):
    """CPU seconds (user and system) the instances' processes used so far."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)
