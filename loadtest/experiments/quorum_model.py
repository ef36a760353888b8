"""The quorum exhibit's client and nodes: R + W > N over N independent Redis nodes (a teaching exhibit, not a store).

No Dynamo-style store (Cassandra, Riak) runs on this machine, so this small
quorum client stands in for one, for `python -m loadtest quorum` only; the
site never uses it.

- Every value carries a version (counter, writer); the counter is the
  writer's clock in microseconds, as Cassandra stamps its writes, so a write
  needs no read first and the newest write wins. A node keeps a value only
  if its version is newer than the one it has (a Lua script), so a node
  never goes backwards. (All writers share this machine's clock.)
- A write goes to W nodes: asked all at once in a random order, it succeeds
  once W have acknowledged, and fails if fewer than W answer.
- A read asks R nodes in a random order and returns the highest version it
  saw from the first R that answer; it fails if fewer than R answer.
- Nothing copies values between nodes in the background; read repair (write
  the newest version back to the nodes that answered with an older one) is a
  switch, off by default.

A read is stale when it returns a version older than the newest version
acknowledged before the read began. With R + W > N, every read quorum meets
every write quorum, so no read is stale as long as both can still be formed,
that is while at most min(N - R, N - W) nodes are gone.
"""

import math
import random
import secrets
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import redis

from deploy.cluster import free_port, new_password, running, signal_group, start_relay, start_server, stop, stop_relay
from labcore.connections import no_retry

KEEP_NEWER = """
local current = redis.call('HMGET', KEYS[1], 'counter', 'writer')
local counter, writer = tonumber(ARGV[1]), ARGV[2]
local have = tonumber(current[1])
if have == nil or have < counter or (have == counter and (current[2] or '') < writer) then
    redis.call('HSET', KEYS[1], 'counter', ARGV[1], 'writer', writer, 'value', ARGV[3])
    return 1
end
return 0
"""

NO_VERSION = (0, "")


class QuorumError(Exception):
    """Fewer nodes answered than the quorum needs."""


@dataclass(frozen=True)
class Shape:
    n: int
    r: int
    w: int

    @property
    def overlapping(self):
        return self.r + self.w > self.n

    @property
    def tolerated(self):
        """Nodes that can be gone while both quorums can still be formed."""
        return min(self.n - self.r, self.n - self.w)

    def __str__(self):
        return f"N={self.n} R={self.r} W={self.w}"


CALLERS = 8  # operations a client may have in flight at once without one waiting for another's workers


class QuorumClient:
    """Reads and writes one key over independent Redis nodes, by quorum."""

    def __init__(self, ports, shape, *, password, timeout=0.25, read_repair=False):
        self.shape = shape
        self.read_repair = read_repair
        self.nodes = [redis.Redis(port=port, password=password, socket_timeout=timeout,
                                  socket_connect_timeout=timeout, retry=no_retry()) for port in ports]
        self._keep_newer = [node.register_script(KEEP_NEWER) for node in self.nodes]
        # A worker for every node of every operation in flight (run_load's six callers, and room): with nodes at
        # a distance, a call holds its worker for a round trip, and calls queued behind it would look far away.
        self._pool = ThreadPoolExecutor(max_workers=shape.n * CALLERS, thread_name_prefix="quorum")

    def close(self):
        self._pool.shutdown(wait=True)
        for node in self.nodes:
            node.close()

    def _first(self, count, call):
        """Ask `count` nodes chosen at random, all at once; return their answers as (node, result).

        A node that fails is replaced by the next one in the random order, so
        only `count` nodes see the call when all answer. Raise QuorumError
        when fewer than `count` can answer.
        """
        order = random.sample(range(len(self.nodes)), len(self.nodes))
        pending = {self._pool.submit(call, index): index for index in order[:count]}
        spare = iter(order[count:])
        answers = []
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    answers.append((index, future.result()))
                except redis.RedisError:
                    replacement = next(spare, None)
                    if replacement is not None:
                        pending[self._pool.submit(call, replacement)] = replacement
        if len(answers) < count:
            raise QuorumError(f"{len(answers)} of {len(self.nodes)} nodes answered; the quorum is {count}")
        return answers

    def read(self, key):
        """Return (version, value) of the newest version among R nodes."""
        answers = self._first(self.shape.r, lambda i: self.nodes[i].hmget(key, "counter", "writer", "value"))
        found = [((int(c), w.decode()), v.decode()) if c is not None else (NO_VERSION, None)
                 for _, (c, w, v) in answers]
        version, value = max(found, key=lambda item: item[0])
        if self.read_repair and value is not None:
            for (index, _), (seen, _) in zip(answers, found):
                if seen < version:
                    self._keep_newer[index](keys=[key], args=[version[0], version[1], value])
        return version, value

    def write(self, key, value, writer):
        """Write a new version of key; return it once W nodes acknowledged."""
        # Microseconds: Lua compares numbers as doubles, exact below 2**53.
        version = (time.time_ns() // 1000, writer)
        self._first(self.shape.w, lambda i: self._keep_newer[i](keys=[key], args=[version[0], writer, value]))
        return version


WRITES_PER_SECOND = 25  # per writer: each acknowledged version stands a moment before the next


def run_load(client, *, seconds, history, writers=2, readers=4, key="quorum:key"):
    """Paced writers and unpaced readers on one key for `seconds`, each operation recorded into `history`.

    A write is "ok" with the version it wrote once W nodes acknowledged it,
    and "unknown" when fewer did (it may have reached some nodes, so a read
    may still return it); a read is "ok" with the version it returned, and
    "failed" when fewer than R nodes answered. Every figure is computed from
    the history afterwards (checkers.stale_versions and kin).
    """
    deadline = time.monotonic() + seconds
    stopped = threading.Event()

    def writer(number):
        name = f"w{number}-{secrets.token_hex(2)}"
        while time.monotonic() < deadline:
            op = history.invoke(name, "write")
            try:
                version = client.write(key, f"{name}:{time.time():.6f}", name)
            except QuorumError:
                history.complete(op, "unknown", refusal="quorum")
            else:
                history.complete(op, "ok", value=list(version))
            # Paced whether or not it worked: a failing writer must not spin and starve the readers.
            stopped.wait(random.expovariate(WRITES_PER_SECOND))

    def reader(number):
        while time.monotonic() < deadline:
            op = history.invoke(f"r{number}", "read")
            try:
                version, _ = client.read(key)
            except QuorumError:
                history.complete(op, "failed", refusal="quorum")
            else:
                history.complete(op, "ok", value=list(version))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    stopped.set()


def miss_chance(shape, gone):
    """The chance that a read quorum misses every node of the last write quorum, both among the live nodes."""
    live = shape.n - gone
    if live < max(shape.r, shape.w):
        return None
    return math.comb(live - shape.w, shape.r) / math.comb(live, shape.r)


SHAPES = [Shape(7, 4, 4), Shape(7, 1, 7), Shape(7, 7, 1), Shape(7, 3, 3), Shape(5, 3, 3)]


def distances_of(count, distances):
    """Each node's distance in ms each way: the i-th of `distances`, cycling; 0 for all without."""
    return [distances[index % len(distances)] if distances else 0 for index in range(count)]


class Nodes:
    """N private Redis servers on free ports, each one killed, paused or brought back on demand.

    With distances, the clients reach node i through a latency relay (deploy's) that delays each
    direction by the i-th distance, so a round trip to it takes twice that longer.
    """

    def __init__(self, count, state_dir, distances=()):
        self.state_dir = state_dir
        self.ports = [free_port() for _ in range(count)]
        self.password = new_password()
        self.records = [None] * count
        self.distances = distances_of(count, distances)
        self.relay = None

    def start(self, index):
        self.records[index] = start_server("redis", port=self.ports[index], state_dir=self.state_dir,
                                            password=self.password)

    def start_all(self):
        for index, record in enumerate(self.records):
            if running(record):
                signal_group(record["pid"], signal.SIGCONT)
            else:
                self.start(index)
        for port in self.ports:
            redis.Redis(port=port, password=self.password).flushall()
        if any(self.distances) and self.relay is None:
            self.relay = start_relay({f"node{i}": port for i, port in enumerate(self.ports)}, state_dir=self.state_dir,
                                     delays={f"node{i}": ms for i, ms in enumerate(self.distances)})

    def client(self, shape, **options):
        ports = [self.relay["ports"][f"node{i}"] for i in range(len(self.ports))] if self.relay else self.ports
        return QuorumClient(ports, shape, password=self.password, **options)

    def take_down(self, index, fault):
        record = self.records[index]
        if fault == "kill":
            stop(record, sig=signal.SIGKILL)
        else:
            signal_group(record["pid"], signal.SIGSTOP)

    def stop_all(self):
        if self.relay:
            stop_relay(self.relay)
        for record in self.records:
            if record is not None:
                signal_group(record["pid"], signal.SIGCONT)
                stop(record, sig=signal.SIGKILL)
