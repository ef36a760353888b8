"""python -m loadtest bench-replication: what a write that waits for k of N replicas at a distance costs.

Replicas sit at stated distances (`--distances`, milliseconds each way, given
by deploy's latency relays: deploy/links.py): replica i of N is at the i-th
distance (cycling). The primary and the bench's clients are at 0, so a
round trip between the primary and replica i takes 2 * d_i more. For N in
{1, 2, 4} and k in {0, 1, a majority, all}:

- Redis: one cluster per N (`--redis sentinel`); each write is a SET and a
  `WAIT k` sent together, one round trip to the primary, which answers once
  k replicas acknowledged it.
- PostgreSQL: one cluster per N and k > 0 with `synchronous_standby_names =
  'ANY k (*)'`; each write is an INSERT committed on its own, which returns
  once k standbys flushed it. k = 0 is measured on the N's cluster with
  k = all, under `synchronous_commit = local` (the commit waits for no
  standby).

Each connection (a thread, its own client) writes one write after another
for `seconds`; rounds alternate the order of the points, so the machine's
drift falls on all of them alike. Beside each (N, k) its prediction: the
write's own cost (its median at k = 0 for that N) plus the round trip to the
k-th nearest replica, 2 * d_k, and the difference between them.

Every round of every (N, k) goes into history.jsonl as a sample of every
write's latency, and bench-replication.json, the table and the page are
computed from it (replication_report.py), so `python -m loadtest recheck`
gives them again.
"""

import sys
import threading
import time
from pathlib import Path

import psycopg
import redis

from deploy import cluster as deploy
from deploy.cluster import free_base_port
from loadtest.bench import replication_report
from loadtest.bench.replication_report import DISTANCES, REPLICAS, STORES, SYNC, distances_of, points
from loadtest.cli import at_least_one

NAME = replication_report.NAME
HELP = ("what a write that waits for k of N replicas at stated distances costs (Redis WAIT, PostgreSQL ANY k), "
        "beside its prediction")
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--stores", default="redis,postgres")
    parser.add_argument("--replicas", default=",".join(map(str, REPLICAS)), help="numbers of replicas N")
    parser.add_argument("--sync", default=",".join(SYNC), help="replicas each write waits for: 0, 1, majority, all")
    parser.add_argument("--distances", default=",".join(map(str, DISTANCES)),
                        help="ms each way between the primary and replica i (the i-th, cycling)")
    parser.add_argument("--rounds", type=at_least_one, default=3)
    parser.add_argument("--seconds", type=float, default=4, help="per (N, k) and round")
    parser.add_argument("--connections", type=int, default=4, help="clients writing at once")
    parser.add_argument("--quick", action="store_true",
                        help="a check that it runs: N = 1 only, one round of 1 s, one connection")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-replication")


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.replicas, args.rounds, args.seconds, args.connections = "1", 1, 1, 1
    try:
        distances = [float(d) for d in args.distances.split(",")]
    except ValueError:
        raise ValueError(f"--distances wants milliseconds, comma-separated, e.g. 0.5,2,10,40; "
                         f"not {args.distances!r}") from None
    report = bench(stores=args.stores.split(","), replicas=[int(n) for n in args.replicas.split(",")],
                   sync=args.sync.split(","), distances=distances, rounds=args.rounds, seconds=args.seconds,
                   connections=args.connections, out=args.out, command=args.run.command)
    replication_report.write(args.out, args.run, report)
    print(replication_report.setting(report))
    print(replication_report.table(report).markdown())
    print(f"figures: {args.out / replication_report.FIGURES}; report: {args.out / 'report.html'}")
    return 0


def check(stores, replicas, sync, distances):
    for values, allowed, what in ((stores, STORES, "--stores"), (sync, SYNC, "--sync")):
        if unknown := [value for value in values if value not in allowed]:
            raise ValueError(f"{what} {', '.join(unknown)}: each is one of {', '.join(allowed)}")
    if not replicas or not all(1 <= n <= 6 for n in replicas):
        raise ValueError("--replicas: numbers of replicas from 1 to 6")
    if not distances or not all(0 <= d <= 1000 for d in distances):
        raise ValueError("--distances: milliseconds each way, from 0 to 1000")
    if "0" not in sync:
        raise ValueError("--sync must include 0: the write's own cost, on which every prediction stands")


def bench(*, stores=STORES, replicas=REPLICAS, sync=SYNC, distances=DISTANCES, rounds=3, seconds=4, connections=4,
          out, command="python -m loadtest bench-replication"):
    """Measure every (N, k) of each store in alternating rounds; return the report (also bench-replication.json).

    Every round of every (N, k) goes into out/history.jsonl as it is
    measured, and the report is computed from it (replication_report.py).
    """
    check(stores, replicas, sync, distances)
    grid = points(replicas, sync)
    with replication_report.started(out, command=command, stores=stores, replicas=replicas, sync=sync,
                                    distances=distances, rounds=rounds, seconds=seconds,
                                    connections=connections) as recorded:
        for store in stores:
            _bench_store(recorded, store, grid, distances, rounds, seconds, connections, out)
    return replication_report.written(out)


def _clusters_needed(store, grid):
    """{(N, k) of the grid: the (N, k) of the cluster it is measured on}."""
    if store == "redis":
        return {(n, k): (n, 0) for n, k in grid}
    most = {n: max(k for m, k in grid if m == n) for n, _ in grid}
    return {(n, k): (n, k or most[n]) for n, k in grid}


def _bench_store(recorded, store, grid, distances, rounds, seconds, connections, out):
    on = _clusters_needed(store, grid)
    started = {}
    try:
        for n, k in dict.fromkeys(on.values()):
            print(f"{store}: starting N={n}" + (f", ANY {k}" if store == "postgres" else ""), file=sys.stderr)
            started[n, k] = _up(store, n, k, distances, out / "clusters" / f"{store}-{n}-{k}")
        for round_number in range(rounds):
            for n, k in grid if round_number % 2 == 0 else reversed(grid):
                print(f"{store}: round {round_number + 1}/{rounds}, N={n}, k={k}", file=sys.stderr)
                writer = _Writer(store, started[on[n, k]], k)
                before = _relays_cpu(started[on[n, k]])
                sample = writer.measure(seconds, connections)
                replication_report.measured(recorded, store=store, replicas=n, k=k, round_number=round_number,
                                            relay_cpu_s=_relays_cpu(started[on[n, k]]) - before, **sample)
    finally:
        for state_dir in started.values():
            deploy.down(state_dir)
def _relays_cpu(state_dir):
    """CPU seconds the cluster's store nodes' latency relays used so far (deploy's status rows)."""
    return sum(row["relay_cpu_s"] or 0 for row in deploy.status(state_dir=state_dir)["stores"])


def _up(store, replicas, k, distances, state_dir):
    prefix = "redis" if store == "redis" else "pg"
    latency = {f"{prefix}{i + 1}": d for i, d in distances_of(replicas, distances).items()}
    if store == "redis":
        topology = deploy.Topology(redis="sentinel", redis_replicas=replicas)
        settings = {"sessions": "redis", "presence": "redis", "db": "sqlite"}
    else:
        topology = deploy.Topology(pg_standbys=replicas, pg_sync=f"ANY {k}" if k else "off")
        settings = {"sessions": "db", "presence": "memory", "db": "postgres"}
    deploy.up(instances=1, topology=topology, port=free_base_port(), latency=latency, state_dir=state_dir, **settings)
    return state_dir


class _Writer:
    """Writes to a cluster's primary, each waiting for k replicas, from `connections` clients at once."""

    def __init__(self, store, state_dir, k):
        self.store, self.k = store, k
        self.primary = deploy.load(state_dir).stores["redis1" if store == "redis" else "pg1"]
        if store == "postgres":
            with psycopg.connect(self._url(), autocommit=True) as connection:
                connection.execute("CREATE TABLE IF NOT EXISTS bench_replication (connection int, number int)")

    def _url(self):
        return deploy.server_settings("postgres", self.primary)["DATABASE_URL"]

    def measure(self, seconds, connections):
        """{"latencies_ms": [every write's], "writes": count, "short": writes fewer than k replicas confirmed}."""
        results = [None] * connections
        deadline = time.perf_counter() + seconds
        threads = [threading.Thread(target=self._run, args=(results, index, deadline)) for index in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed = [result for result in results if isinstance(result, Exception)]
        if failed:
            raise failed[0]
        latencies = [ms for result in results for ms in result["latencies_ms"]]
        return {"latencies_ms": latencies, "short": sum(result["short"] for result in results)}

    def _run(self, results, index, deadline):
        try:
            results[index] = (self._redis if self.store == "redis" else self._postgres)(index, deadline)
        except Exception as error:  # reported by measure(), in the caller's thread
            results[index] = error

    def _redis(self, index, deadline):
        client = redis.Redis(host=self.primary["host"], port=self.primary["port"], password=self.primary["password"],
                             socket_timeout=60)
        latencies, short, number = [], 0, 0
        with client:
            while time.perf_counter() < deadline:
                number += 1
                pipeline = client.pipeline(transaction=False)
                pipeline.set(f"bench:{index}", number)
                pipeline.execute_command("WAIT", self.k, 0)
                began = time.perf_counter()
                _, confirmed = pipeline.execute()
                latencies.append((time.perf_counter() - began) * 1000)
                short += confirmed < self.k
        return {"latencies_ms": latencies, "short": short}

    def _postgres(self, index, deadline):
        latencies = []
        with psycopg.connect(self._url(), autocommit=True) as connection:
            if self.k == 0:
                connection.execute("SET synchronous_commit = local")
            number = 0
            while time.perf_counter() < deadline:
                number += 1
                began = time.perf_counter()
                connection.execute("INSERT INTO bench_replication VALUES (%s, %s)", (index, number))
                latencies.append((time.perf_counter() - began) * 1000)
        return {"latencies_ms": latencies, "short": 0}
