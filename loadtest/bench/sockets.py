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

The figures are computed in loadtest/bench/sockets_figures.py; the
measurements are loadtest/bench/sockets_runs.py. The verdict checks the
targets (at least 5,000 idle sockets held; p99 at most 50 ms with the Redis
layer) and that nothing asked for went missing; exit status 3 when a check
is not met.
"""

import json
import sys
from pathlib import Path

from deploy import cluster
from deploy.cluster import free_base_port
from loadtest.bench import sockets_runs
from loadtest.bench.sockets_figures import over_rounds
from loadtest.cli import chosen, listed
from loadtest.harness import load, verdict
from loadtest.harness.socket_swarm import allow_open_files
from loadtest.harness.verdict import Check
from loadtest.reports.tables import Table

NAME = "bench-sockets"
HELP = "idle WebSockets one instance holds and their memory, a room's fan-out latency, push against poll CPU"
CONFIGS = {
    "idle": {"instances": 1, "presence": "redis", "channel_layer": "redis"},
    "fanout-redis": {"instances": 3, "presence": "redis", "channel_layer": "redis"},
    "fanout-memory": {"instances": 1, "presence": "memory", "channel_layer": "memory"},
}
IDLE_TARGET = 5000  # idle sockets one instance holds (issue #32)
P99_TARGET_MS = 50  # a post's p99 to a room of 100 over three instances, Redis layer (issue #32)


def add_arguments(parser):
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--idle", type=int, default=IDLE_TARGET, help="idle sockets to open on one instance")
    parser.add_argument("--hold", type=float, default=5, help="seconds the idle sockets are held")
    parser.add_argument("--batch", type=int, default=100, help="handshakes in flight at once")
    parser.add_argument("--fanout-users", type=int, default=100, help="sockets in the fan-out room, besides the poster")
    parser.add_argument("--messages", type=int, default=50, help="posts to the fan-out room")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between two posts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-sockets")


def main(args):
    """Every configuration in every round, each on a fresh cluster; the tables, bench-sockets.json, the verdict."""
    names = chosen(listed(args.configs), CONFIGS)
    for value, what in ((args.idle, "--idle"), (args.batch, "--batch"), (args.fanout_users, "--fanout-users"),
                        (args.messages, "--messages"), (args.rounds, "--rounds")):
        if value < 1:
            raise ValueError(f"{what} must be at least 1, not {value}")
    # Before any cluster starts: HAProxy inherits the limit.
    allow_open_files(max(args.idle if "idle" in names else 0, args.fanout_users) + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for number in range(1, args.rounds + 1):
        for name in names if number % 2 else list(reversed(names)):
            print(f"round {number}/{args.rounds}: {name}", file=sys.stderr)
            rounds.append({"round": number, "config": name,
                           "figures": measure(name, args, args.out / "clusters" / f"{name}-{number}")})
    summary = {name: over_rounds([r["figures"] for r in rounds if r["config"] == name]) for name in names}
    judged = verdict.judge(hypothesis(idle=args.idle), summary)
    parameters = {key: getattr(args, key) for key in ("idle", "hold", "batch", "fanout_users", "messages", "spacing",
                                                      "rounds")}
    (args.out / "bench-sockets.json").write_text(json.dumps(
        {"command": args.run.command, "parameters": parameters, "rounds": rounds, "summary": summary,
         "verdict": judged}, indent=1))
    print(f"{args.rounds} alternating rounds, each configuration on a fresh cluster; median (min-max) of the rounds")
    for table in tables(rounds, summary):
        print("\n" + table.markdown())
    print("\n" + "\n".join(verdict.lines(judged)))
    print(f"figures: {args.out / 'bench-sockets.json'}")
    return verdict.exit_status(judged)


def measure(name, args, state_dir):
    """One configuration's figures, on a cluster started for it and taken down after, whatever happens."""
    deployed = cluster.up(server="uvicorn", sessions="db", port=free_base_port(), env=load.SITE_ENV, relays=False,
                          state_dir=state_dir, **CONFIGS[name])
    try:
        if name == "idle":
            return sockets_runs.idle(deployed, sockets=args.idle, batch=args.batch, hold=args.hold)
        return sockets_runs.fanout(deployed, users=args.fanout_users, messages=args.messages, spacing=args.spacing,
                                   batch=args.batch)
    finally:
        cluster.down(state_dir)


def hypothesis(*, idle):
    """What the run should show: every socket held and every delivery made; the issue's targets where they apply."""
    checks = [Check("idle", f"idle sockets held through HAProxy, of the {idle} opened, in every round",
                    "held.min", idle, None)]
    if idle >= IDLE_TARGET:
        checks.append(Check("idle", f"one instance holds at least {IDLE_TARGET:,} idle sockets (target)",
                            "held.min", IDLE_TARGET, None))
    for name in ("fanout-redis", "fanout-memory"):
        checks += [Check(name, "deliveries missing by push, in any round", "missing.max", 0, 0),
                   Check(name, "deliveries missing by poll, in any round", "poll.missing.max", 0, 0)]
    checks += [
        Check("fanout-redis", "instances holding the room's sockets, in every round (round robin through HAProxy)",
              "instances_holding.min", 3, 3),
        Check("fanout-redis", f"p99 ms of a post to the room spread over three instances, Redis layer "
                              f"(target: at most {P99_TARGET_MS})", "p99_ms.median", 0, P99_TARGET_MS),
    ]
    return checks


def tables(rounds, summary):
    """The idle sockets' table and the fan-out's, from the summary (and each round's counts by name)."""
    out = []
    if "idle" in summary:
        figures = summary["idle"]
        out.append(Table.of(
            ["sockets asked", "opened", "held", "not held (reasons, all rounds)", "memory per socket KiB",
             "RSS before MiB", "RSS after MiB", "seconds to open"],
            [[*(_cell(figures[key], "g") for key in ("asked", "opened", "held")), _reasons(rounds, "idle"),
              _cell(figures["memory_per_socket_kib"], ".1f"), _cell(figures["rss_before_kib"], ".0f", 1024),
              _cell(figures["rss_after_kib"], ".0f", 1024), _cell(figures["open_seconds"], ".1f")]],
            title="Idle sockets on one instance", caption="through HAProxy, Redis channel layer and presence"))
    fanouts = [name for name in summary if name != "idle"]
    if fanouts:
        out.append(Table.of(
            ["configuration", "sockets per instance (each round)", "received / expected", "p50 ms", "p99 ms",
             "max ms", "poll p50 ms", "push CPU µs per delivery", "poll CPU µs per delivery", "poll / push CPU"],
            [[name, "; ".join(", ".join(f"{node} {n}" for node, n in r["figures"]["spread"].items())
                              for r in rounds if r["config"] == name),
              f"{_cell(summary[name]['received'], 'g')} / {_cell(summary[name]['expected'], 'g')}",
              *(_cell(_at(summary[name], key), ".1f") for key in ("p50_ms", "p99_ms", "max_ms", "poll.p50_ms")),
              *(_cell(_at(summary[name], key), ".0f") for key in ("cpu_us_per_delivery", "poll.cpu_us_per_delivery")),
              _cell(summary[name]["poll_to_push_cpu"], ".2f")] for name in fanouts],
            title="A room's fan-out", caption=f"p99 target with the Redis layer: at most {P99_TARGET_MS} ms"))
    return out


def _reasons(rounds, name):
    """The refusals and closes of every round, summed by reason: "0" when there were none."""
    counts = {}
    for r in rounds:
        if r["config"] == name:
            for kind, found in (("refused", r["figures"]["refused"]), ("closed", r["figures"]["closed_while_held"])):
                for reason, n in found.items():
                    counts[f"{kind} {reason}"] = counts.get(f"{kind} {reason}", 0) + n
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())) or "0"


def _at(figures, path):
    """The figure at a dotted path ("poll.p50_ms")."""
    for part in path.split("."):
        figures = figures[part]
    return figures


def _cell(spread, spec, divisor=1):
    """A figure over rounds as "median (min-max)", or the median alone when the range reads as one; "-" when not
    measured."""
    if spread is None:
        return "-"
    low, mid, high = (f"{spread[key] / divisor:{spec}}" for key in ("min", "median", "max"))
    return mid if low == high else f"{mid} ({low}-{high})"
