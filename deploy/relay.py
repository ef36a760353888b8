"""Latency between nodes, in user space: a TCP relay that delays each byte stream, and stalls it on demand.

This kernel has no netem, so distance is made by a relay in front of a node:
clients connect to the relay's `listen` address, it connects to the node's
`target` address, and copies bytes both ways. What it guarantees:

- A pipe delay, per direction: a chunk read at time t is written at
  t + delay (delay_ms each way, so a request and its answer gain twice
  delay_ms). Chunks queue behind each other without waiting for any answer,
  so 100 pipelined commands through a 10 ms link take about 20 ms, not
  100 round trips. Order is kept: each chunk is written after the one before.
- Jitter (optional): each chunk's delay is drawn uniformly from
  delay_ms +- jitter_ms (never below 0), and still never overtakes the chunk
  before it (TCP cannot reorder), so a long draw holds back those behind it.
- Live changes: a new delay applies at once to every open connection, to
  the chunks already queued too. 0 (the default) relays each chunk as soon
  as it is read.
- A stall: nothing is delivered either way for a time (or until resumed);
  connections stay open and bytes keep being read into the queues, then
  everything queued is delivered, each chunk once its own time has come.
  End of stream (a FIN) is delayed and stalled like the bytes before it.
- Delays add along a path: the node at the other end of a connection (its
  `peers` entry, found once when the connection opens: deploy/sources.py)
  adds its own delay and jitter, and its own stall, to the relay's. A
  connection between nodes A and B, through B's relay, is delayed by
  latency(A) + latency(B) each way. Until its other end is known, a
  connection delivers nothing while any peer has a delay or a stall.
- Bounded memory: a direction stops reading once it holds QUEUE_LIMIT bytes
  (4 MiB); TCP then pushes back on the sender, as a full link would.

What it does not do: the TCP handshake is not delayed (the kernel completes
it before the relay sees the connection, so connect() returns at once and a
connection's set-up costs no round trip); an error or reset on either side
closes both sides at once, without waiting; the target refusing the
connection closes the client's at once, and so does a connection to the
target that the kernel connected to itself (a target down, its port given
to the relay's own end: TCP lets a socket connect to itself, and it would
echo the client's bytes back and hold the port its node restarts on).

Timers: epoll waits in whole milliseconds, rounded up, which would make a
0.5 ms link 1 ms; the relay's event loop waits with select() on its epoll
descriptor instead, to the microsecond.
"""

import asyncio
import collections
import functools
import ipaddress
import math
import random
import select
import selectors
import socket
import struct

from deploy import sources

CHUNK = 64 * 1024  # bytes read at a time
QUEUE_LIMIT = 4 * 1024 * 1024  # bytes a direction holds before it stops reading
MAX_DELAY_MS = 60_000


def milliseconds(value, name):
    """value as a float from 0 to MAX_DELAY_MS, or ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"{name} must be a number of milliseconds from 0 to {MAX_DELAY_MS}, not {value!r}")
    return float(value)


class _Wakeup:
    """A wake-up any number of coroutines may wait for, each with a deadline of its own."""

    def __init__(self):
        self._waiters = set()

    def notify(self):
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, until=math.inf):
        """Return on notify() or at loop time `until`, whichever comes first."""
        loop = asyncio.get_running_loop()
        if until <= loop.time():
            return
        waiter = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_at(until, lambda: waiter.done() or waiter.set_result(None)) if until < math.inf else None
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            if timer:
                timer.cancel()


class Relay:
    """One route: connections to `listen` relayed to `target`, each byte stream delayed as the settings say."""

    def __init__(self, *, listen, target, delay_ms=0, jitter_ms=0):
        self.listen, self.target = tuple(listen), tuple(target)
        self.changed = _Wakeup()  # the settings changed, and so the times of the chunks queued
        self.set_delay(delay_ms, jitter_ms)
        self.stalled_until = 0.0  # loop time; math.inf: until resumed
        # name -> {"ms", "jitter_ms", "address", "pids", "stalled_until"}: the nodes a connection may come from
        self.peers = {}
        self._server = None
        self._connections = {}  # task -> its two _Pipe (none while it connects)
        self._looking = set()  # the look-ups of connections' other ends under way

    async def start(self):
        self._server = await asyncio.start_server(self._accept, *self.listen, limit=CHUNK)
        return self

    @property
    def address(self):
        """(host, port) the relay listens on: the port it was given, or the one it picked for port 0."""
        return self._server.sockets[0].getsockname()[:2]

    def set_delay(self, ms, jitter_ms=0):
        self.delay_ms, self.jitter_ms = milliseconds(ms, "delay_ms"), milliseconds(jitter_ms, "jitter_ms")
        self.changed.notify()

    def stall(self, seconds=None):
        """Deliver nothing for `seconds` (None: until resume()); connections stay open."""
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                    or not 0 < seconds <= 3600):
            raise ValueError("seconds must be a number above 0 and at most 3600 (none: until resumed), "
                             f"not {seconds!r}")
        self.stalled_until = math.inf if seconds is None else asyncio.get_running_loop().time() + seconds
        self.changed.notify()

    def resume(self):
        self.stalled_until = 0.0
        self.changed.notify()

    def set_peers(self, peers):
        """The nodes a connection may come from: {name: {"ms", "jitter_ms", "address", "pids"}}; stalls stay."""
        for name, settings in peers.items():
            milliseconds(settings.get("ms", 0), f"{name}'s ms"), milliseconds(settings.get("jitter_ms", 0), "jitter")
        self.peers = {name: {"ms": 0, "jitter_ms": 0, **settings,
                             "stalled_until": self.peers.get(name, {}).get("stalled_until", 0.0)}
                      for name, settings in peers.items()}
        for pipes in self._connections.values():
            if pipes and pipes[0].peer is None:  # from none of the nodes known before: perhaps a new one's
                self._look_up(pipes)
        self.changed.notify()

    def stall_peer(self, name, seconds=None):
        """Deliver nothing to or from node `name` for `seconds` (None: until resumed; 0: resume it)."""
        if name not in self.peers:
            raise ValueError(f"no peer {name!r}; peers: {', '.join(sorted(self.peers)) or 'none'}")
        self.peers[name]["stalled_until"] = (0.0 if seconds == 0 else math.inf if seconds is None
                                             else asyncio.get_running_loop().time() + seconds)
        self.changed.notify()

    def active(self):
        """Whether any peer has a delay, jitter or stall: then a connection waits to know its other end."""
        now = asyncio.get_running_loop().time()
        return any(peer["ms"] or peer["jitter_ms"] or peer["stalled_until"] > now for peer in self.peers.values())

    def offset(self, peer=None):
        """A chunk's draw of jitter, in milliseconds: the relay's own, plus its other end's."""
        draw = random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        jitter = self.peers.get(peer, {}).get("jitter_ms", 0)
        return draw + (random.uniform(-jitter, jitter) if jitter else 0.0)

    def due(self, read_at, offset, peer=None):
        """The loop time a chunk read at `read_at` with jitter `offset`, on a connection with node `peer` at its
        other end (None: none; UNKNOWN: not known yet), may be written, under today's settings."""
        if peer is UNKNOWN:
            return math.inf if self.active() else read_at
        other = self.peers.get(peer, {})
        delay = self.delay_ms + other.get("ms", 0) + offset
        return max(read_at + max(0.0, delay) / 1000, self.stalled_until, other.get("stalled_until", 0.0))

    def status(self):
        left = self.stalled_until - asyncio.get_running_loop().time()
        pipes = [pipe for both in self._connections.values() for pipe in both]
        return {
            "listen": list(self.address), "target": list(self.target),
            "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
            "stalled": left > 0, "stall_left_s": round(left, 3) if 0 < left < math.inf else None,
            "connections": len(self._connections), "queued_bytes": sum(pipe.queued for pipe in pipes),
            "from": sorted({pipe.peer for pipe in pipes if isinstance(pipe.peer, str)}),
        }

    async def close(self):
        """Stop listening and close every connection at once, queued bytes dropped."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, client_reader, client_writer):
        # A task of our own, not the server's: close() cancels it, and asyncio (3.12.1) logs a
        # cancelled server callback as an error.
        task = asyncio.create_task(self._relay(client_reader, client_writer))
        self._connections[task] = ()
        task.add_done_callback(self._connections.pop)

    async def _relay(self, client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(
                *self.target, limit=CHUNK, local_addr=_same_source(client_writer, self.target))
        except OSError:
            client_writer.transport.abort()
            return
        if _to_itself(target_writer):  # the target is down, and the kernel gave us its port to connect from (or reset)
            # Closed with a reset, not a FIN: a closed connection would wait in TIME_WAIT on the node's port.
            target_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                               struct.pack("ii", 1, 0))
            target_writer.transport.abort()
            client_writer.transport.abort()
            return
        ends = client_writer.get_extra_info("peername")[:2], client_writer.get_extra_info("sockname")[:2]
        pipes = (_Pipe(self, client_reader, target_writer, ends), _Pipe(self, target_reader, client_writer, ends))
        self._connections[asyncio.current_task()] = pipes
        self._look_up(pipes)
        clean = False
        try:
            async with asyncio.TaskGroup() as group:
                for pipe in pipes:
                    group.create_task(pipe.read())
                    group.create_task(pipe.write())
            clean = True
        except* OSError:
            pass  # a reset or a broken pipe on either side: both close below, at once
        finally:
            for writer in (client_writer, target_writer):
                if clean:
                    writer.close()
                else:
                    writer.transport.abort()

    def _look_up(self, pipes):
        looking = asyncio.create_task(self._identify(pipes))
        self._looking.add(looking)  # held until done: the loop keeps only weak references to tasks
        looking.add_done_callback(self._looking.discard)

    async def _identify(self, pipes):
        """Find which node opened the connection (deploy/sources.py), off the event loop; tell its pipes."""
        candidates = {name: {"address": p.get("address"), "pids": p.get("pids", ())} for name, p in self.peers.items()}
        try:
            found = await asyncio.to_thread(functools.partial(sources.owner, *pipes[0].ends, candidates))
        except Exception:  # whatever went wrong, the connection counts as from outside: never held for ever
            found = None
        for pipe in pipes:
            pipe.peer = found
        self.changed.notify()


UNKNOWN = object()  # a connection's other end, while it is being looked up


class _Pipe:
    """One direction of one connection: chunks in the order read, each written once its time has come."""

    def __init__(self, relay, reader, writer, ends):
        self.relay, self.reader, self.writer = relay, reader, writer
        self.ends = ends  # (the client's address, the relay's) of its connection
        self.peer = UNKNOWN  # the node at the connection's other end (a name), None for none
        self.chunks = collections.deque()  # (read_at, jitter offset, bytes); b"" is the end of the stream
        self.queued = 0
        self.arrived, self.drained = _Wakeup(), _Wakeup()

    async def read(self):
        loop = asyncio.get_running_loop()
        while True:
            while self.queued >= QUEUE_LIMIT:
                await self.drained.wait()
            data = await self.reader.read(CHUNK)
            self.chunks.append((loop.time(), self.relay.offset(self.peer), data))
            self.queued += len(data)
            self.arrived.notify()
            if not data:
                return

    async def write(self):
        loop = asyncio.get_running_loop()
        while True:
            if not self.chunks:
                await self.arrived.wait()
                continue
            due = self.relay.due(*self.chunks[0][:2], self.peer)
            if loop.time() < due:
                await self.relay.changed.wait(until=due)
                continue
            now = loop.time()
            while self.chunks and self.relay.due(*self.chunks[0][:2], self.peer) <= now:
                _, _, data = self.chunks.popleft()
                if not data:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    await self.writer.drain()
                    return
                self.writer.write(data)
                self.queued -= len(data)
            self.drained.notify()
            await self.writer.drain()


def precise_loop():
    """An event loop on epoll with waits to the microsecond: select() on the epoll descriptor, then its events.

    Made when called, not at import: deploy.cluster imports this module, and Locust's processes (which
    import deploy.cluster) run under gevent, whose `selectors` has no EpollSelector.
    """
    class PreciseSelector(selectors.EpollSelector):
        def select(self, timeout=None):
            if timeout is not None and timeout > 0:
                select.select([self.fileno()], [], [], timeout)
                timeout = 0
            return super().select(timeout)

    return asyncio.SelectorEventLoop(PreciseSelector())


def _to_itself(writer):
    """Whether the connection's two ends are one address and port (a socket connected to itself), or it has no
    other end any more (reset as it opened): either way nothing can be relayed to it."""
    peer = writer.get_extra_info("peername")
    return peer is None or writer.get_extra_info("sockname")[:2] == peer[:2]


def _same_source(client_writer, target):
    """(the client's address, any port) when client and target are both on loopback, else None.

    On loopback every 127.x address is this machine's, so the relay can
    connect from the address its client came from: the node sees its
    clients' own addresses (the site throttles logins by address), as it
    would without a relay. Elsewhere (a namespace) the client's address is
    not the relay's to use, and the node sees the relay's.
    """
    try:
        client = ipaddress.ip_address(client_writer.get_extra_info("peername")[0])
        return (str(client), 0) if client.is_loopback and ipaddress.ip_address(target[0]).is_loopback else None
    except ValueError:  # a name, not an address
        return None
