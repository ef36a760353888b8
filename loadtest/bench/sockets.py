"""`python -m loadtest bench-sockets`: issue #32's WebSocket targets, on real clusters, in alternating rounds.

Every cluster runs uvicorn instances behind HAProxy (`deploy up --server
uvicorn --no-relays`, sessions in SQLite), and every socket is opened
through HAProxy by one asyncio process (loadtest/harness/socket_swarm.py).
Each configuration gets a fresh cluster in each round, so that no round
starts on a process whose memory an earlier one grew; rounds alternate the
configurations' order, and each figure is reported as the rounds' median
with their range.

- idle: one instance, Redis channel layer and presence; IDLE sockets
  opened in batches and held HOLD seconds. How many opened and stayed
  open, why the others did not, the instance's resident memory with one
  socket open and with all, memory per socket, time to open them.
- fanout-redis: three instances, the Redis layer, a room of FANOUT_USERS
  sockets spread over them by HAProxy's round robin (each socket's hello
  names its instance); one poster sends MESSAGES posts SPACING seconds
  apart. Delivery latency per (message, receiver) on one monotonic clock,
  p50 / p99 / max; then the same messages by the room page's HTTP poll to
  the same users, and the instances' CPU per delivery by each: push
  against poll.
- fanout-memory: the same on one instance with the in-memory layer.

The measurements are loadtest/bench/sockets_runs.py; each round's readings
go into history.jsonl as the run goes, and bench-sockets.json, the tables,
the verdict and the page are computed from that history alone
(sockets_report.py, with the figures of sockets_figures.py), so `python -m
loadtest recheck` gives them again. The verdict checks the targets (at
least 5,000 idle sockets held; p99 at most 50 ms with the Redis layer) and
that nothing asked for went missing; exit status 3 when a check is not met.
"""

import subprocess
import sys
from pathlib import Path

from deploy import cluster
from deploy.cluster import free_base_port
from loadtest.bench import sockets_report, sockets_runs
from loadtest.bench.wrk import ROOT
from loadtest.cli import chosen, listed
from loadtest.harness import load, verdict
from loadtest.harness.socket_swarm import allow_open_files

NAME = sockets_report.NAME
HELP = "idle WebSockets one instance holds and their memory, a room's fan-out latency, push against poll CPU"
INDEXED = True  # its report is listed in results/index.html
CONFIGS = {
    "idle": {"instances": 1, "presence": "redis", "channel_layer": "redis"},
    "fanout-redis": {"instances": 3, "presence": "redis", "channel_layer": "redis"},
    "fanout-memory": {"instances": 1, "presence": "memory", "channel_layer": "memory"},
}
PARAMETERS = ("idle", "hold", "batch", "fanout_users", "messages", "spacing", "rounds")


def add_arguments(parser):
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--idle", type=int, default=sockets_report.IDLE_TARGET,
                        help="idle sockets to open on one instance")
    parser.add_argument("--hold", type=float, default=5, help="seconds the idle sockets are held")
    parser.add_argument("--batch", type=int, default=100, help="handshakes in flight at once")
    parser.add_argument("--fanout-users", type=int, default=100, help="sockets in the fan-out room, besides the poster")
    parser.add_argument("--messages", type=int, default=50, help="posts to the fan-out room")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between two posts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-sockets")


def main(args):
    """Every configuration in every round, each on a fresh cluster, into the history; from it the tables,
    bench-sockets.json, the page and the verdict."""
    names = chosen(listed(args.configs), CONFIGS)
    for value, what in ((args.idle, "--idle"), (args.batch, "--batch"), (args.fanout_users, "--fanout-users"),
                        (args.messages, "--messages"), (args.rounds, "--rounds")):
        if value < 1:
            raise ValueError(f"{what} must be at least 1, not {value}")
    # Before any cluster starts: HAProxy inherits the limit.
    allow_open_files(max(args.idle if "idle" in names else 0, args.fanout_users) + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    parameters = {key: getattr(args, key) for key in PARAMETERS}
    with sockets_report.started(args.out, command=args.run.command, parameters=parameters,
                                commit=commit()) as recorded:
        for number in range(1, args.rounds + 1):
            for name in names if number % 2 else list(reversed(names)):
                print(f"round {number}/{args.rounds}: {name}", file=sys.stderr)
                readings = measure(name, args, args.out / "clusters" / f"{name}-{number}", origin=recorded.started)
                sockets_report.measured(recorded, name, number, readings)
    figured, judged = sockets_report.report(args.out, args.run)
    print(f"{args.rounds} alternating rounds, each configuration on a fresh cluster; median (min-max) of the rounds")
    for table in sockets_report.tables(figured["rounds"], figured["summary"]):
        print("\n" + table.markdown())
    print("\n" + "\n".join(verdict.lines(judged)))
    print(f"figures: {args.out / sockets_report.FIGURES}; report: {args.out / 'report.html'}")
    return verdict.exit_status(judged)


def measure(name, args, state_dir, *, origin):
    """One configuration's readings, on a cluster started for it and taken down after, whatever happens; times as
    seconds since `origin` (the history's start)."""
    deployed = cluster.up(server="uvicorn", sessions="db", port=free_base_port(), env=load.SITE_ENV, relays=False,
                          state_dir=state_dir, **CONFIGS[name])
    try:
        if name == "idle":
            return sockets_runs.idle(deployed, sockets=args.idle, batch=args.batch, hold=args.hold)
        return sockets_runs.fanout(deployed, users=args.fanout_users, messages=args.messages, spacing=args.spacing,
                                   batch=args.batch, origin=origin)
    finally:
        cluster.down(state_dir)


def commit():
    """The commit the checkout this runs from is at (`git rev-parse HEAD`); None outside a git checkout (an
    installed wheel, a container), or where git is missing."""
    try:
        found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None
