"""Power loss: the acknowledged session writes each persistence setting loses, and what a session write costs.

For each setting, a cluster of one instance whose sessions' store keeps its
data on the power-loss file system (`deploy up --power-loss`,
docs/design/persistence.md): Redis with `--redis-persistence` none,
everysec or always; PostgreSQL (sessions in the database) with
`--pg-synchronous-commit` off or on. Users log in, then each reads its
session and writes the next counter every tick (the harness's `checking`
loop, so that a read lower than an acknowledged write shows a loss even
after later writes). After `seconds`, every node of the store loses its
power at once and starts again (`deploy powerloss STORE`); the users go on
for `after` seconds once it answers again, then every session is read back
through HAProxy.

Figures, from the history alone (so `python -m loadtest recheck` computes
them again): the session writes acknowledged before
the power loss, those lost (checkers.lost_writes) and those no final read
confirmed nor showed lost (checkers.unconfirmed_writes), the sessions lost, and
the median and 95th percentile of an acknowledged write's latency before
the power loss: the cost of the setting, which the file system in between
inflates (every operation passes through a Python process), so compare the
settings with each other, not with a store on a plain disk.
"""

import json
import statistics
from pathlib import Path

from deploy import cluster
from deploy.cluster import Topology, free_base_port
from loadtest.cli import chosen, listed
from loadtest.harness import checkers, load
from loadtest.harness.history import FILE, History, scenarios
from loadtest.harness.history import load as load_history
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "powerloss"
HELP = ("acknowledged session writes a power loss of the sessions' store loses, and a write's cost, per persistence "
        "setting (root, FUSE)")
INDEXED = True  # its report is listed in results/index.html

SETTINGS = {
    "redis-none": ("redis", {"redis_persistence": "none"}),
    "redis-everysec": ("redis", {"redis_persistence": "everysec"}),
    "redis-always": ("redis", {"redis_persistence": "always"}),
    "pg-commit-off": ("postgres", {"pg_synchronous_commit": "off"}),
    "pg-commit-on": ("postgres", {"pg_synchronous_commit": "on"}),
}
# What the documents predict: `always` and synchronous_commit on keep every acknowledged write; everysec loses
# about the last second's, synchronous_commit off the last few hundred milliseconds', none every session.
PREDICTED = {"redis-none": "every session", "redis-everysec": "about the last second's writes",
             "redis-always": "none", "pg-commit-off": "the last few hundred milliseconds' writes",
             "pg-commit-on": "none"}


def add_arguments(parser):
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--seconds", type=float, default=20, help="of load before the power loss")
    parser.add_argument("--after", type=float, default=5, help="seconds of load after it")
    parser.add_argument("--users", type=int, default=6, help="users, each reading and writing every tick")
    parser.add_argument("--out", type=Path, default=Path("results") / "powerloss")


def main(args):
    names = chosen(listed(args.settings), tuple(SETTINGS))
    with History(args.out / FILE, experiment=NAME, command=args.run.command) as recorded:
        for name in names:
            run(name, users=args.users, seconds=args.seconds, after=args.after, out=args.out, history=recorded)
    results, _ = report(args.out, args.run)
    print(table(results).markdown())
    return 0


def up_options(name):
    """(the store, deploy.up's options) of a setting. No latency relays (up --no-relays): the fault is a power
    loss, not a delay, and a relay's hop would add to each write's cost what no real deployment pays."""
    store, fields = SETTINGS[name]
    topology = Topology(power_loss=True, **fields)
    if store == "redis":
        return store, {"sessions": "redis", "presence": "memory", "db": "sqlite", "topology": topology,
                       "relays": False}
    return store, {"sessions": "db", "presence": "memory", "db": "postgres", "topology": topology,
                   "relays": False}


def run(name, *, users, seconds, after, out, history):
    """Run one setting into the history: up, load, power loss, load again, final reads, down."""
    history.scenario = name
    history.sample(condition="started", parameters={"seconds": seconds, "users": users})
    store, options = up_options(name)
    state_dir = Path(out) / "clusters" / name
    try:
        deployed = cluster.up(instances=1, port=free_base_port(), env=load.SITE_ENV, state_dir=state_dir, **options)
        urls = {"app1": deployed.instance_url("app1")}
        names = load.accounts(state_dir, urls, users=users, newcomer_seconds=0)
        made = load.users(history, urls, names, users)
        with load.Load(history, made, urls, names, [], loop=load.checking) as running:
            load.settle(seconds=seconds)
            fault = history.fault("powerloss", store)
            cluster.act("powerloss", store, state_dir=state_dir)
            history.took_effect(fault)
            # PostgreSQL replays its WAL before it takes logins: the users' `after` seconds start once it answers.
            if load.wait(history, "answers", lambda: _answers(state_dir, store), 120) is None:
                raise RuntimeError(f"{store} did not answer within 120 s of the power loss")
            load.settle(seconds=after)
            running.stop()
        load.final_reads(made, through=deployed.url, presence=False)
    finally:
        cluster.down(state_dir=state_dir)


def _answers(state_dir, store):
    """Whether the store's primary answers as one again."""
    kind = "postgres" if store == "postgres" else "redis"
    return any(row["kind"] == kind and row["role"] == "primary" for row in cluster.status(state_dir)["stores"])


def figures(events, name):
    (fault,) = checkers.faults(events, "powerloss")
    before = [op for op in checkers.ops(events, "write", "ok") if op["completed"] < fault["sent"]]
    latencies = sorted(op["completed"] - op["invoked"] for op in before)
    lost = [op for op in checkers.lost_writes(events) if op["completed"] < fault["sent"]]
    unconfirmed = [op for op in checkers.unconfirmed_writes(events) if op["completed"] < fault["sent"]]
    return {"setting": name, "predicted_lost": PREDICTED[name], "acknowledged": len(before), "lost": len(lost),
            "unconfirmed": len(unconfirmed), "sessions_lost": len(checkers.sessions_lost(events)),
            "sessions_unconfirmed": len(checkers.sessions_unconfirmed(events)),
            "write_ms_median": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "write_ms_p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2) if latencies else None}


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each setting's figures, powerloss.json and the page; (results, None).

    The run and `python -m loadtest recheck` both call it. No verdict: the
    predictions are on the page beside the figures, and the exit status
    never depended on them.
    """
    out = Path(out)
    _, events = load_history(out / FILE)
    results = [figures(mine, name) for name, mine in scenarios(events).items()]
    (out / "powerloss.json").write_text(json.dumps(results, indent=2) + "\n")
    page.write(out, run, title="Power loss: what each persistence setting loses", finished=finished,
               headline="; ".join(f"{r['setting']}: {r['lost']} of {r['acknowledged']} acknowledged session writes "
                                  "lost" for r in results),
               sections=[("", page.paragraphs(
                   "Each setting: a cluster of one instance whose sessions' store keeps its data on the power-loss "
                   "file system; users write their sessions every tick, then every node of the store loses its "
                   "power at once and starts again, and every session is read back. Write latencies include the "
                   "file system's own Python process: compare the settings with each other. Every figure is "
                   f"computed from history.jsonl (recheck: python -m loadtest recheck {out}).")),
                   ("", table(results).html())])
    return results, None


def table(results):
    return Table.of(["setting", "acknowledged before", "lost", "unconfirmed", "sessions lost",
                     "sessions unconfirmed", "write ms (median, p95)", "predicted lost"],
                    [[r["setting"], r["acknowledged"], r["lost"], r["unconfirmed"], r["sessions_lost"],
                      r["sessions_unconfirmed"],
                      f"{r['write_ms_median']}, {r['write_ms_p95']}", r["predicted_lost"]] for r in results])
