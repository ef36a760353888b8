"""A teaching exhibit, not a store: R + W > N made visible over N independent Redis nodes.

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

import json
import math
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import redis

from deploy.cluster import free_port, new_password, running, signal_group, start_relay, start_server, stop, stop_relay
from labcore.connections import no_retry
from loadtest import _page as page
from loadtest._svg import series_chart

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


@dataclass
class Tally:
    reads: int = 0
    stale_reads: int = 0
    failed_reads: int = 0
    writes: int = 0
    failed_writes: int = 0

    def __post_init__(self):
        self.read_ms, self.write_ms = [], []


class History:
    """The newest version acknowledged so far, and when: what a read must not fall behind."""

    def __init__(self):
        self._lock = threading.Lock()
        self.newest = NO_VERSION

    def acknowledged(self, version):
        with self._lock:
            self.newest = max(self.newest, version)

    def snapshot(self):
        with self._lock:
            return self.newest


WRITES_PER_SECOND = 25  # per writer: each acknowledged version stands a moment before the next


def run_load(client, *, seconds, writers=2, readers=4, key="quorum:key"):
    """Paced writers and unpaced readers on one key for `seconds`; return their Tally."""
    tally, history, lock = Tally(), History(), threading.Lock()
    deadline = time.monotonic() + seconds
    stopped = threading.Event()

    def writer(number):
        name = f"w{number}-{secrets.token_hex(2)}"
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                version = client.write(key, f"{name}:{time.time():.6f}", name)
                history.acknowledged(version)
                with lock:
                    tally.writes += 1
                    tally.write_ms.append((time.perf_counter() - started) * 1000)
            except QuorumError:
                with lock:
                    tally.failed_writes += 1
            # Paced whether or not it worked: a failing writer must not spin and starve the readers.
            stopped.wait(random.expovariate(WRITES_PER_SECOND))

    def reader():
        while time.monotonic() < deadline:
            must_see = history.snapshot()
            started = time.perf_counter()
            try:
                version, _ = client.read(key)
            except QuorumError:
                with lock:
                    tally.failed_reads += 1
                continue
            with lock:
                tally.reads += 1
                tally.read_ms.append((time.perf_counter() - started) * 1000)
                if version < must_see:
                    tally.stale_reads += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    threads += [threading.Thread(target=reader) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    stopped.set()
    return tally


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


def measure(shape, *, seconds, fault="kill", read_repair=False, state_dir, distances=()):
    """For k = 0 .. N nodes gone, run the load; return one row of figures per k."""
    rows = []
    nodes = Nodes(shape.n, state_dir, distances)
    try:
        for gone in range(shape.n + 1):
            nodes.start_all()
            for index in random.sample(range(shape.n), gone):
                nodes.take_down(index, fault)
            client = nodes.client(shape, read_repair=read_repair)
            try:
                tally = run_load(client, seconds=seconds)
            finally:
                client.close()
            rows.append({**summarise(shape, gone, tally), "distances_ms": nodes.distances})
    finally:
        nodes.stop_all()
    return rows


def summarise(shape, gone, tally):
    attempted_reads = tally.reads + tally.failed_reads
    attempted_writes = tally.writes + tally.failed_writes
    return {
        "n": shape.n, "r": shape.r, "w": shape.w, "gone": gone,
        "overlapping": shape.overlapping, "within_tolerance": gone <= shape.tolerated,
        "reads": tally.reads, "stale_reads": tally.stale_reads,
        "stale_pct": _pct(tally.stale_reads, tally.reads),
        "miss_chance_pct": None if miss_chance(shape, gone) is None else round(100 * miss_chance(shape, gone), 2),
        "failed_reads": tally.failed_reads, "failed_reads_pct": _pct(tally.failed_reads, attempted_reads),
        "writes": tally.writes, "failed_writes": tally.failed_writes,
        "failed_writes_pct": _pct(tally.failed_writes, attempted_writes),
        "read_p50_ms": _median(tally.read_ms), "write_p50_ms": _median(tally.write_ms),
        "read_p99_ms": _percentile(tally.read_ms, 99), "write_p99_ms": _percentile(tally.write_ms, 99),
    }


def _pct(part, whole):
    return round(100 * part / whole, 2) if whole else None


def _median(values):
    return round(sorted(values)[len(values) // 2], 3) if values else None


def _percentile(values, percent):
    return round(sorted(values)[min(len(values) - 1, len(values) * percent // 100)], 3) if values else None


def parse_shapes(text):
    """'7/4/4,5/3/3' -> [Shape(7, 4, 4), Shape(5, 3, 3)]."""
    shapes = []
    for item in text.split(","):
        try:
            n, r, w = (int(part) for part in item.strip().split("/"))
        except ValueError:
            raise ValueError(f"a shape is N/R/W, like 7/4/4, not {item.strip()!r}") from None
        if not (1 <= r <= n and 1 <= w <= n and n <= 9):
            raise ValueError(f"{item.strip()}: want 1 <= R, W <= N <= 9")
        shapes.append(Shape(n, r, w))
    return shapes


def parse_distances(text):
    """'0.5,2,10' -> [0.5, 2.0, 10.0]; '' -> [] (every node on loopback)."""
    try:
        distances = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--distances wants milliseconds, comma-separated, e.g. 0.5,2,10,40; not {text!r}") from None
    if not all(0 <= d <= 1000 for d in distances):
        raise ValueError("--distances: milliseconds each way, from 0 to 1000")
    return distances


def run(shapes, *, seconds, fault, read_repair, out, distances=()):
    """Measure every shape and write quorum.json; return the plan and the rows."""
    out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="quorum-"))
    rows = []
    try:
        for shape in shapes:
            print(f"{shape}: k = 0 .. {shape.n} nodes {'killed' if fault == 'kill' else 'paused'}", file=sys.stderr)
            rows += measure(shape, seconds=seconds, fault=fault, read_repair=read_repair, state_dir=state,
                            distances=distances)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    plan = {"shapes": [str(s) for s in shapes], "seconds": seconds, "fault": fault, "read_repair": read_repair,
            "writers": 2, "readers": 4, "distances_ms": list(distances)}
    (out / "quorum.json").write_text(json.dumps({"plan": plan, "rows": rows}, indent=1))
    return plan, rows


def write(out, run, plan, shapes, rows):
    """The charts as SVG files, and the page (loadtest/_page.py)."""
    out.mkdir(parents=True, exist_ok=True)
    charts = {str(shape): chart(shape, [r for r in rows if (r["n"], r["r"], r["w"]) == (shape.n, shape.r, shape.w)])
              for shape in shapes}
    charts["stale"] = stale_chart(shapes, rows)
    for name, svg in charts.items():
        (out / f"quorum-{name.replace(' ', '-').replace('=', '')}.svg").write_text(svg)
    page.write(out, run, title="Quorums over independent Redis nodes (a teaching exhibit)",
               headline=headline(rows), sections=[
                   ("", page.paragraphs(
                       f"{plan['writers']} writers ({WRITES_PER_SECOND} writes/s each) and {plan['readers']} readers "
                       f"on one key, {plan['seconds']:g} s for each number of nodes gone; nodes "
                       f"{'killed' if plan['fault'] == 'kill' else 'paused'}; read repair "
                       f"{'on' if plan['read_repair'] else 'off'}; "
                       + (f"node i {', '.join(f'{d:g}' for d in plan['distances_ms'])} ms away each way (the i-th, "
                          "cycling). " if plan.get("distances_ms") else "every node on loopback. ")
                       + "A read is stale when it returns a version older than the newest one acknowledged before "
                       "it began.")),
                   ("", page.charts(charts.values())),
                   ("", page.columns_table(COLUMNS, rows)),
               ])


def headline(rows):
    """The most stale reads measured, where the quorums must overlap and where they need not."""
    parts = []
    for overlapping, words in ((True, "R + W > N"), (False, "R + W <= N")):
        stale = [r["stale_pct"] for r in rows if r["overlapping"] == overlapping and r["stale_pct"] is not None]
        if stale:
            parts.append(f"{words}: at most {max(stale):g} % of reads stale")
    return "; ".join(parts) or "no read answered"


def chart(shape, rows):
    gone = [r["gone"] for r in rows]
    return series_chart(
        f"{shape}: {'R + W > N' if shape.overlapping else 'R + W <= N'}", gone,
        {"stale reads %": [r["stale_pct"] for r in rows], "failed reads %": [r["failed_reads_pct"] for r in rows],
         "failed writes %": [r["failed_writes_pct"] for r in rows]},
        x_label="nodes gone", unit="%")


def stale_chart(shapes, rows):
    """Stale reads by nodes gone, one line per shape, and the chance the quorums miss for those that can."""
    most = max(shape.n for shape in shapes)
    gone = list(range(most + 1))
    series = {}
    for shape in shapes:
        mine = {r["gone"]: r for r in rows if (r["n"], r["r"], r["w"]) == (shape.n, shape.r, shape.w)}
        series[f"{shape.n}/{shape.r}/{shape.w} stale"] = [mine[k]["stale_pct"] if k in mine else None for k in gone]
        if not shape.overlapping:
            series[f"{shape.n}/{shape.r}/{shape.w} quorums miss"] = [
                mine[k]["miss_chance_pct"] if k in mine else None for k in gone]
    return series_chart("Stale reads: measured, and the chance the quorums miss", gone, series,
                        x_label="nodes gone", unit="%", width=640, legend_columns=3)


COLUMNS = [("shape", lambda r: f"{r['n']}/{r['r']}/{r['w']}"), ("R+W>N", lambda r: "yes" if r["overlapping"] else "no"),
           ("gone", lambda r: str(r["gone"])), ("reads", lambda r: str(r["reads"])),
           ("stale", lambda r: f"{r['stale_reads']} ({_cell(r['stale_pct'])})"),
           ("quorums miss", lambda r: _cell(r["miss_chance_pct"])),
           ("failed reads", lambda r: _cell(r["failed_reads_pct"])), ("writes", lambda r: str(r["writes"])),
           ("failed writes", lambda r: _cell(r["failed_writes_pct"])),
           ("read p50/p99 ms", lambda r: f"{_cell(r['read_p50_ms'], '')}/{_cell(r.get('read_p99_ms'), '')}"),
           ("write p50/p99 ms", lambda r: f"{_cell(r['write_p50_ms'], '')}/{_cell(r.get('write_p99_ms'), '')}")]


def _cell(value, unit="%"):
    return "n/a" if value is None else f"{value:g}{unit}"


def table(rows):
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
