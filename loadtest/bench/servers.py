"""`python -m loadtest bench-servers`: the memory poll mix under each server command, beside its ceiling."""

import json
import sys
from pathlib import Path

from loadtest.bench.stores import CEILING, bench
from loadtest.bench.wrk import durability
from loadtest.cli import listed, ratio_text
from loadtest.reports.tables import Table

NAME = "bench-servers"
HELP = "the memory poll mix under each server, beside its ceiling"


def add_arguments(parser):
    parser.add_argument("--servers", default="gthread:1,gthread:2,gthread:4,gthread:8,sync,gevent,granian:4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-servers")


def main(args):
    """For each server: one memory instance and the ceiling under it, in alternating rounds."""
    rows = []
    for server in listed(args.servers):
        print(f"server {server}", file=sys.stderr)
        report = bench(stores_to_run=["memory"], rounds=args.rounds, seconds=args.seconds,
                       connections=args.connections, port=args.port, out=args.out / server.replace(":", "-"),
                       server=server, command=args.run.command)
        memory = report["stores"]["memory"]
        rows.append({"server": server, "ceiling_rps": report["stores"][CEILING]["poll_direct"]["rps"],
                     **{f"direct_{k}": memory["poll_direct"][k] for k in ("rps", "p50_ms", "p99_ms", "to_ceiling")},
                     "lb_rps": memory["poll_lb"]["rps"], "lb_to_direct": memory["lb_to_direct"]})
    (args.out / "servers.json").write_text(json.dumps(rows, indent=1))
    print(f"memory stores, poll mix straight to the instance; wrk, {args.connections} connections, "
          f"{args.rounds} rounds of {args.seconds} s; {durability()}")
    cells = [[r["server"], f"{r['ceiling_rps']:.0f}", f"{r['direct_rps']:.0f}", ratio_text(r["direct_to_ceiling"]),
              f"{r['direct_p50_ms']:.2f}", f"{r['direct_p99_ms']:.2f}", f"{r['lb_rps']:.0f}"] for r in rows]
    print(Table.of(["server", "ceiling req/s", "poll mix req/s", "to its ceiling", "p50 ms", "p99 ms",
                    "through HAProxy req/s"], cells).markdown())
    return 0
