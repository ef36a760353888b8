"""python -m loadtest: the kill experiment across session stores, and its report.

For each configuration: a cluster (python -m deploy), a warm-up, Locust
headless, the fault schedule, an audit of every acknowledged message, and
the cluster's end. Then report.html, results.json and summary.md.

A configuration is SESSIONS[+roundrobin|sticky][@TOPOLOGY]: redis,
memory+sticky, redis@sentinel, redis@sentinel-sync1, db@pg, db@pg-any1.
TOPOLOGY is sentinel (Redis: a primary, 2 replicas, 3 Sentinels),
sentinel-sync<k> (k replicas confirm each session write), pg (PostgreSQL:
a primary, 2 standbys, asynchronous), pg-any<k> or pg-first<k>.

--faults store-kill|store-pause|replica-kill|store-restart aims the fault
at the store (PostgreSQL if the configuration has it, else Redis) instead
of an instance; the experiment then also writes each user's session every
tick, bursts logins around the fault, and reads every session back.
"""

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from deploy.cluster import DeployError, cgroup_version
from labcore import registry
from loadtest import (
    _bench,
    _bench_cost,
    _capacity,
    _etcd,
    _fate,
    _profile,
    _quorum,
    _replication_bench,
    _report,
    _rolling,
    _scaling,
    _shards,
    _split_brain,
    _sticky,
)
from loadtest import _experiment as experiment
from loadtest import _page as page
from loadtest._analysis import headline_failures, summarise
from loadtest._report import write_report
from loadtest.experiments import sockets as _sockets
from loadtest.harness.history import FILE as HISTORY
from loadtest.harness.history import History
from loadtest.harness.history import load as load_history
from loadtest.harness.progress import Progress
from loadtest.harness.verdict import exit_status, judge
from loadtest.harness.verdict import lines as verdict_lines


def build_parser():
    """The command line: one subcommand per experiment and benchmark (each has its page under docs/)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    kill = commands.add_parser("run", help="the kill experiment (the default)", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    kill.add_argument("--configs", help="comma-separated SESSIONS[+LB][@TOPOLOGY], e.g. memory+sticky,redis,"
                      f"redis@sentinel-sync1,db@pg-any1 (default: {','.join(experiment.DEFAULT_MATRIX)}; "
                      f"with a store fault: {','.join(experiment.STORE_MATRIX)})")
    kill.add_argument("--users", type=int, help="a fixed number of Locust users for every configuration "
                      "(overrides --load; skips the capacity step)")
    kill.add_argument("--load", type=float, default=0.6,
                      help="run each configuration at this fraction of the users it held in its capacity step")
    kill.add_argument("--duration", type=float, default=90, help="measured seconds per configuration")
    kill.add_argument("--warmup", type=float, default=10, help="seconds of load before the measured window")
    kill.add_argument("--faults", default="kill",
                      help="instance faults: kill (default), term, scale, kills; store faults: store-kill "
                           "(SIGKILL the primary; PostgreSQL: then promote), store-pause (SIGSTOP it "
                           f"{experiment.PAUSE_SECONDS:g} s), replica-kill, store-restart (kill and start the "
                           "primary at once); rolling-restart (each instance in turn stopped gracefully and started "
                           "again, the everyday deploy; ends with a verdict)")
    kill.add_argument("--instances", type=int, default=3)
    kill.add_argument("--port", type=int, default=8100, help="the experiment cluster's load balancer port")
    kill.add_argument("--out", type=Path, help="output folder (default: results/<date-time>)")
    kill.add_argument("--quick", action="store_true",
                      help="3 configurations, 20 users, 36 s each (about 3 minutes); "
                           "exit 1 unless the headline results hold")
    _capacity_arguments(kill)
    capacity = commands.add_parser("capacity", help="the highest request rate each configuration holds within bounds")
    capacity.add_argument("--configs", default="redis")
    capacity.add_argument("--instances", type=int, default=3)
    capacity.add_argument("--port", type=int, default=8100)
    capacity.add_argument("--out", type=Path, default=Path("results") / "capacity")
    _capacity_arguments(capacity)
    scaling = commands.add_parser("scaling", help="scale-up against scale-out: one core for the site tier, cut into "
                                                  "1, 2 or 4 instances by cgroup CPU quotas")
    scaling.add_argument("--configs", default="memory+sticky,redis,cached_db")
    scaling.add_argument("--sync", default="redis",
                         help="configurations measured again with --redis sentinel --redis-sync 1 ('' for none)")
    scaling.add_argument("--rounds", type=int, default=1, help="rounds, alternating the shapes' order")
    scaling.add_argument("--port", type=int, default=8100)
    scaling.add_argument("--out", type=Path, default=Path("results") / "scaling")
    scaling.add_argument("--from-raw", type=Path, metavar="SCALING_RAW_JSON",
                         help="summarise an earlier run's measurements again (its scaling-raw.json); runs nothing")
    scaling.add_argument("--docs", action="store_true",
                         help=f"also put the table and charts in {_scaling.PAGE} and docs/results/scaling/")
    _capacity_arguments(scaling, _capacity.Steps(start_users=40, step=0.2, hold=10))
    sticky = commands.add_parser("sticky", help="sticky sessions' costs against round robin: load skew, fair share "
                                                "after scale-out, HAProxy's CPU per request")
    sticky.add_argument("--parts", default="skew,fair-share,haproxy-cpu")
    sticky.add_argument("--users", type=int, default=60)
    sticky.add_argument("--duration", type=float, default=60, help="skew: measured seconds (kill at 1/3, start at 2/3)")
    sticky.add_argument("--stay", default="10,30", help="fair share: each user's stay, LOW,HIGH seconds")
    sticky.add_argument("--warmup", type=float, default=40, help="fair share: seconds of turnover before the scale-out")
    sticky.add_argument("--after", type=float, default=50, help="fair share: seconds measured after it")
    sticky.add_argument("--rounds", type=int, default=4, help="haproxy-cpu: alternating rounds")
    sticky.add_argument("--seconds", type=int, default=5, help="haproxy-cpu: seconds of wrk per round")
    sticky.add_argument("--connections", type=int, default=16)
    sticky.add_argument("--port", type=int, default=8100)
    sticky.add_argument("--out", type=Path, default=Path("results") / "sticky")
    bench = commands.add_parser("bench", help="each session store's cost per request, through HAProxy")
    bench.add_argument("--stores", default=",".join(_bench_cost.BENCH_STORES),
                       help="comma-separated; the first is the base of the ratios")
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--seconds", type=int, default=5, help="per store, mix and round")
    bench.add_argument("--connections", type=int, default=8)
    bench.add_argument("--port", type=int, default=8200)
    bench.add_argument("--server", default="gthread:8", help="how each instance is served (deploy/web.py)")
    bench.add_argument("--out", type=Path, default=Path("results") / "bench")
    profiler = commands.add_parser("bench-profile", help="CPU per layer of one instance under the poll mix "
                                   "(py-spy), and store commands per request")
    profiler.add_argument("--sessions", default="redis", help="a SESSION_STORE (Django's stock engines too), "
                          "with settings of its own as bench's rows take them: redis:STORE_BREAKER_INTERVAL=0")
    profiler.add_argument("--seconds", type=int, default=20)
    profiler.add_argument("--connections", type=int, default=8)
    profiler.add_argument("--port", type=int, default=8600)
    profiler.add_argument("--server", default="gthread:8", help="how the instance is served (deploy/web.py)")
    profiler.add_argument("--out", type=Path, default=Path("results") / "bench-profile")
    servers = commands.add_parser("bench-servers", help="the memory poll mix under each server, beside its ceiling")
    servers.add_argument("--servers", default="gthread:1,gthread:2,gthread:4,gthread:8,sync,gevent,granian:4")
    servers.add_argument("--rounds", type=int, default=3)
    servers.add_argument("--seconds", type=int, default=5)
    servers.add_argument("--connections", type=int, default=8)
    servers.add_argument("--port", type=int, default=8200)
    servers.add_argument("--out", type=Path, default=Path("results") / "bench-servers")
    against = commands.add_parser("bench-against", help="the memory poll mix of this checkout against an older commit")
    against.add_argument("ref", help="a commit, tag or branch of this repository")
    against.add_argument("--rounds", type=int, default=4)
    against.add_argument("--seconds", type=int, default=5)
    against.add_argument("--connections", type=int, default=8)
    against.add_argument("--server", default="gthread:8", help="how this checkout's instance is served")
    against.add_argument("--out", type=Path, default=Path("results") / "bench-against")
    shards = commands.add_parser("bench-shards", help="session throughput against Redis Cluster shards (1, 2, 3), "
                                                      "and what a shard primary's death costs")
    shards.add_argument("--shards", default="1,2,3", help="comma-separated shard counts")
    shards.add_argument("--rounds", type=int, default=3)
    shards.add_argument("--seconds", type=int, default=5, help="per shard count and round")
    shards.add_argument("--connections", type=int, default=16)
    shards.add_argument("--instances", type=int, default=2)
    shards.add_argument("--sessions", type=int, default=60, help="users, each with a session, per cluster")
    shards.add_argument("--loss-rounds", type=int, default=3, help="shard primaries killed, one after another")
    shards.add_argument("--out", type=Path, default=Path("results") / "bench-shards")
    replication = commands.add_parser("bench-replication", help="what waiting for k of N replicas costs logins, "
                                      "session writes and message posts (Redis WAIT, PostgreSQL ANY k)")
    replication.add_argument("--stores", default="redis,postgres")
    replication.add_argument("--replicas", default=",".join(map(str, _replication_bench.REPLICAS)),
                             help="numbers of replicas N")
    replication.add_argument("--sync", default=",".join(_replication_bench.SYNC),
                             help="replicas each write waits for: 0, 1, majority, all")
    replication.add_argument("--rounds", type=int, default=3)
    replication.add_argument("--seconds", type=int, default=4, help="per cluster, write and round")
    replication.add_argument("--connections", type=int, default=8)
    replication.add_argument("--out", type=Path, default=Path("results") / "bench-replication")
    sessions = commands.add_parser("bench-sessions", help="µs to load and save a session, and its bytes")
    sessions.add_argument("--stores", default=",".join(_bench.SESSION_STORES))
    presence = commands.add_parser("bench-presence", help="heartbeat and poll cost by room size")
    presence.add_argument("--sizes", default="10,1000,10000")
    posts = commands.add_parser("bench-posts", help="µs per message post, with and without the room lock")
    posts.add_argument("--databases", default="sqlite,postgres")
    posts.add_argument("--repeat", type=int, default=2000, help="posts per variant and database")
    quorum = commands.add_parser("quorum", help="R + W > N made visible: a quorum exhibit over N Redis nodes")
    quorum.add_argument("--shapes", default=",".join(f"{s.n}/{s.r}/{s.w}" for s in _quorum.SHAPES),
                        help="comma-separated N/R/W")
    quorum.add_argument("--seconds", type=float, default=2, help="of load for each number of nodes gone")
    quorum.add_argument("--fault", choices=("kill", "pause"), default="kill")
    quorum.add_argument("--read-repair", action="store_true")
    quorum.add_argument("--out", type=Path, default=Path("results") / "quorum")
    split = commands.add_parser("split-brain", help="acknowledged writes a partition and its heal lose "
                                                   "(needs network namespaces: root)")
    split.add_argument("--scenarios", default=",".join(_split_brain.SCENARIOS),
                       help=f"comma-separated, of: {', '.join(_split_brain.SCENARIOS)}")
    split.add_argument("--seconds", type=float, default=20, help="of partition for each scenario")
    split.add_argument("--users", type=int, default=6, help="users per side, each writing every tick")
    split.add_argument("--out", type=Path, default=Path("results") / "split-brain")
    fate = commands.add_parser("fate", help="fate sharing: a stale primary, no Sentinel majority, the lease "
                                            "holder cut off (needs network namespaces: root)")
    fate.add_argument("--scenarios", default=",".join(_fate.SCENARIOS),
                      help=f"comma-separated, of: {', '.join(_fate.SCENARIOS)}")
    fate.add_argument("--seconds", type=float, default=12, help="of partition, or of no Sentinel majority")
    fate.add_argument("--users", type=int, default=4, help="users per instance, each writing every tick")
    fate.add_argument("--out", type=Path, default=Path("results") / "fate")
    losses = commands.add_parser("etcd-loss", help="what a 5-member etcd does with 0 to 3 members killed, "
                                                   "or split 2 | 3")
    losses.add_argument("--mode", choices=("members", "site", "partition"), default="members",
                        help="members: etcd's own calls with members killed; site: logins and session reads and "
                             "writes through the deployed site (deploy up --sessions etcd); partition: a 2 | 3 "
                             "split between members in network namespaces")
    losses.add_argument("--members", type=int, default=5)
    losses.add_argument("--tries", type=int,
                        help="requests of each kind per row (default: 10 through the site, else 20)")
    losses.add_argument("--out", type=Path, help="output folder (default: results/etcd-loss-MODE)")
    _sockets.arguments(commands.add_parser("sockets", help="what an instance's kill, stop, restart or scale-in "
                                                           "costs WebSocket users, per channel layer"))
    again = commands.add_parser("recheck", help="a finished split-brain or fate run's figures, charts and verdict "
                                                "again, from its history.jsonl alone; rewrites its page")
    again.add_argument("folder", type=Path, help="the run's folder (its --out)")
    index = commands.add_parser("index", help="write results/index.html again from the runs' run.json files")
    index.add_argument("--results", type=Path, default=Path("results"),
                       help="the folder whose runs (one and two levels below) to list")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    run = page.Run.of(argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "index":
        return write_index(args.results)
    if args.command == "recheck":
        try:
            return recheck(args.folder)
        except (OSError, ValueError, KeyError) as exc:
            print(f"loadtest: cannot recheck {args.folder}: {exc}", file=sys.stderr)
            return 1
    if args.command == "run" and args.out is None:
        args.out = Path("results") / datetime.now().strftime("%Y-%m-%d-%H%M%S")
    if args.command == "etcd-loss" and args.out is None:
        args.out = Path("results") / f"etcd-loss-{args.mode}"
    try:
        with_page = {"split-brain": run_split_brain, "fate": run_fate, "etcd-loss": run_etcd_losses,
                     "capacity": run_capacity, "scaling": run_scaling, "sticky": run_sticky, "quorum": run_quorum,
                     "run": run_experiment,
                     "sockets": lambda args, run: _ended(args.out, _sockets.command(args, run))}.get(args.command)
        if with_page:
            code = with_page(args, run)
            if args.out.parent.name == "results":  # elsewhere the parent may be any folder: /tmp, the checkout
                try:
                    write_index(args.out.parent)
                except OSError as failure:
                    print(f"loadtest: the index of runs was not written: {failure}", file=sys.stderr)
            return code
        if args.command == "bench-servers":
            return run_bench_servers(args)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "bench-profile":
            return run_bench_profile(args)
        if args.command == "bench-against":
            return run_bench_against(args)
        if args.command == "bench-shards":
            return run_bench_shards(args)
        if args.command == "bench-replication":
            return run_bench_replication(args)
        if args.command == "bench-sessions":
            return run_micro("sessions", args.stores.split(","), None)
        if args.command == "bench-posts":
            return run_post_cost(args)
        if args.command == "bench-presence":
            return run_micro("presence", list(registry.PRESENCE_STORES), args.sizes)
    except (DeployError, ValueError, RuntimeError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1


def run_bench_shards(args):
    report = _shards.bench_shards(shards=_shards.check_shards(args.shards), rounds=args.rounds,
                                  seconds=args.seconds, connections=args.connections, instances=args.instances,
                                  sessions=args.sessions, loss_rounds=args.loss_rounds, out=args.out)
    _shards.print_report(report)
    return 0


def _capacity_arguments(parser, defaults=None):
    defaults = defaults or _capacity.Steps()
    parser.add_argument("--start-users", type=int, default=defaults.start_users, help="the capacity step's first step")
    parser.add_argument("--step", type=float, default=defaults.step, help="each step's users over the last's, minus 1")
    parser.add_argument("--hold", type=float, default=defaults.hold, help="seconds each step is held after its ramp")
    parser.add_argument("--p99-bound", type=float, default=defaults.p99_ms, help="ms; a step over it is not held")
    parser.add_argument("--failed-bound", type=float, default=defaults.failed_pct,
                        help="percent of requests; a step with more failed is not held")
    parser.add_argument("--max-users", type=int, default=defaults.max_users)


def _steps(args):
    return _capacity.Steps(start_users=args.start_users, step=args.step, hold=args.hold, p99_ms=args.p99_bound,
                           failed_pct=args.failed_bound, max_users=args.max_users)


def write_index(results):
    """Write results/index.html; name each run.json it had to skip."""
    runs, skipped = page.write_index(results)
    for name, why in skipped:
        print(f"index: skipped {results / name}: {why}", file=sys.stderr)
    print(f"index of {len(runs)} runs: {results / page.INDEX_FILE}")
    return 0


def run_capacity(args, run):
    args.out.mkdir(parents=True, exist_ok=True)
    steps = _steps(args)
    rows = []
    for name in [n.strip() for n in args.configs.split(",") if n.strip()]:
        config = experiment.parse_config(name)
        print(f"{name}: capacity step, {steps.describe()}", file=sys.stderr)
        rows.append(_capacity.measure(config, steps, instances=args.instances, port=args.port, out=args.out))
    (args.out / "capacity.json").write_text(json.dumps(rows, indent=1))
    _report.write_capacity(args.out, run, rows, steps.describe())
    print(f"capacity steps: {steps.describe()}; {page.machine()}")
    print(_report.capacity_table(rows))
    print(f"figures: {args.out / 'capacity.json'}; report: {args.out / 'report.html'}")
    return 0


def run_scaling(args, run):
    steps = _steps(args)
    if args.from_raw:
        measured = _scaling.read_raw(args.from_raw)
        args.rounds = max(len(records) for records in measured.values())
        rows = _scaling.with_ratios(_scaling.summarise(measured))
    else:
        found = _scaling.variants([n.strip() for n in args.configs.split(",") if n.strip()],
                                  [n.strip() for n in args.sync.split(",") if n.strip()])
        rows = _scaling.with_ratios(_scaling.run(found, steps, rounds=args.rounds, port=args.port, out=args.out,
                                                 progress=lambda what: print(what, file=sys.stderr, flush=True)))
    described = next(iter(measured.values()))[0]["described"] if args.from_raw else steps.describe()
    plan = {"steps": described, "rounds": args.rounds, "cgroup": cgroup_version(),
            "machine": page.machine()}
    _scaling.write(args.out, rows, plan, run)
    print(f"capacity steps: {described}; {args.rounds} round(s); {page.machine()}")
    print(_scaling.table(rows))
    print(_scaling.limits_text(plan["cgroup"]))
    if args.docs:
        _scaling.to_docs(args.out, rows, plan, run.command)
        print(f"{_scaling.PAGE} and docs/results/scaling/ updated")
    print(f"report: {args.out / 'report.html'}")
    return 0


def run_sticky(args, run):
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"skew", "fair-share", "haproxy-cpu"}
    if unknown:
        raise ValueError(f"--parts: {', '.join(sorted(unknown))} is not one of skew, fair-share, haproxy-cpu")
    low, _, high = args.stay.partition(",")
    stay = (float(low), float(high or low))

    def progress(what):
        print(what, file=sys.stderr, flush=True)

    results = {"command": run.command, "machine": page.machine()}
    if "skew" in parts:
        results["skew"] = _sticky.skew(users=args.users, duration=args.duration, warmup=10, port=args.port,
                                       out=args.out, progress=progress)
    if "fair-share" in parts:
        results["fair_share"] = _sticky.fair_share(users=args.users, stay=stay, warmup=args.warmup, after=args.after,
                                                   instances=3, port=args.port, out=args.out, progress=progress)
    if "haproxy-cpu" in parts:
        results["haproxy_cpu"] = _sticky.haproxy_cpu(rounds=args.rounds, seconds=args.seconds,
                                                     connections=args.connections, instances=3, port=args.port,
                                                     out=args.out, progress=progress)
    _sticky.write(args.out, run, results)
    print(_sticky.tables(results))
    print(f"figures: {args.out / 'sticky.json'}; report: {args.out / 'report.html'}")
    return 0


def run_experiment(args, run):
    if args.quick:
        # CI runs this: a fixed small load, no capacity step.
        names = experiment.QUICK_MATRIX
        users, duration, warmup = 20, 36, 8
    else:
        names = experiment.STORE_MATRIX if args.faults in experiment.STORE_FAULTS else experiment.DEFAULT_MATRIX
        users, duration, warmup = args.users, args.duration, args.warmup
    if args.configs:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
    configs = [experiment.parse_config(name) for name in names]
    for config in configs:
        experiment.fault_schedule(args.faults, duration, args.instances, config)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    plan = experiment.Plan(configs, users, duration, warmup, args.faults, args.instances, args.port, out,
                           load=args.load)

    progress = Progress(configs, plan.seconds_per_config())
    steps = None if users else _steps(args)
    capacity_note = (f", plus a capacity step each that ends when the site gives (at most "
                     f"{steps.count() * (steps.ramp + steps.hold) / 60:.0f} minutes)" if steps else "")
    print(f"{len(configs)} configurations, about {progress.total / 60:.0f} minutes{capacity_note}; output in {out}/",
          file=sys.stderr)
    results, capacities = [], []
    for index, config in enumerate(configs):
        load = None
        if steps:
            progress(index, config, "capacity step")
            began = time.monotonic()
            capacity = _capacity.measure(config, steps, instances=args.instances, port=args.port, out=out,
                                         progress=lambda what: progress(index, config, what))
            progress.add(time.monotonic() - began)  # the estimate covers the runs; this step took its own time
            capacities.append(capacity)
            if not capacity["users"]:
                raise RuntimeError(f"{config.name} held no capacity step ({capacity['stopped_by']}); "
                                   "lower --start-users or pass --users")
            load = {"fraction": args.load, "capacity_users": capacity["users"], "capacity_rps": capacity["rps"]}
        raw = experiment.run_config(plan, config, index, progress,
                                    users=users or max(1, round(args.load * capacity["users"])), load=load)
        results.append(summarise(raw))
    progress.done()

    judged = judge(_rolling.hypothesis(configs), {r["config"]["name"]: r for r in results}) \
        if args.faults == "rolling-restart" else None
    summary = write_report(out, run, plan.as_json(), results, capacities, verdict=judged)
    print(summary)
    if judged is not None:
        return _ended(out, judged)
    print(f"\nreport: {out / 'report.html'}")
    problems = headline_failures(results)
    if args.quick:
        if problems:
            print("headline results do NOT hold:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("headline results hold: memory+sticky loses sessions after the kill, redis loses none, "
              "no acknowledged message is lost or duplicated.")
    return 0


def run_quorum(args, run):
    shapes = _quorum.parse_shapes(args.shapes)
    plan, rows = _quorum.run(shapes, seconds=args.seconds, fault=args.fault, read_repair=args.read_repair,
                             out=args.out)
    _quorum.write(args.out, run, plan, shapes, rows)
    print(_quorum.table(rows))
    print(f"\nreport: {args.out / 'report.html'}")
    return 0


# Per scenario of split-brain and fate, besides its --seconds: a cluster up and down, the waits, the final reads.
SCENARIO_SETUP_SECONDS = 60


def run_split_brain(args, run):
    names = _split_brain.plan([name.strip() for name in args.scenarios.split(",") if name.strip()])
    progress = Progress(names, args.seconds + SCENARIO_SETUP_SECONDS)
    with History(args.out / HISTORY, experiment="split-brain", command=run.command) as history:
        for index, name in enumerate(names):
            progress(index, name, f"partition for {args.seconds:g} s, {args.users} users a side")
            _split_brain.run(name, seconds=args.seconds, users_per_side=args.users, out=args.out, history=history)
    progress.done()
    results, judged = _split_brain.report(args.out, run)
    print(_split_brain.table(results))
    return _ended(args.out, judged)


def run_fate(args, run):
    names = _fate.plan([name.strip() for name in args.scenarios.split(",") if name.strip()])
    progress = Progress(names, args.seconds + SCENARIO_SETUP_SECONDS)
    with History(args.out / HISTORY, experiment="fate", command=run.command) as history:
        for index, name in enumerate(names):
            progress(index, name, f"{args.seconds:g} s, {args.users} users an instance")
            _fate.run(name, seconds=args.seconds, users_per_instance=args.users, out=args.out, history=history)
    progress.done()
    text, judged = _fate.report(args.out, run)
    print(text)
    return _ended(args.out, judged)


def recheck(folder):
    """Every figure, chart and the verdict of a finished run again, from its history.jsonl alone; the page too.

    The run's command and times come from its run.json, or from the history's header when the run ended before
    writing its page.
    """
    header, _ = load_history(folder / HISTORY)
    report = {"split-brain": _split_brain.report, "fate": _fate.report,
              "sockets": _sockets.report}.get(header["experiment"])
    if report is None:
        raise ValueError(f"{folder / HISTORY}: no recheck for the experiment {header['experiment']!r}")
    if (folder / page.RUN_FILE).exists():
        record = json.loads((folder / page.RUN_FILE).read_text())
    else:  # the run ended before its page: what the history's header says of it
        record = {"kind": header["experiment"], "command": header["command"],
                  "started": header["started"][:19] + "+00:00", "finished": None}
    run = page.Run(record["kind"], record["command"], record["started"])
    judged = report(folder, run, finished=record["finished"])[1]
    return _ended(folder, judged)


def _ended(out, judged):
    """Print the verdict and where the page is; the exit status says whether the hypothesis held."""
    print("\n" + "\n".join(verdict_lines(judged)))
    print(f"\nreport: {out / 'report.html'}")
    return exit_status(judged)


def run_etcd_losses(args, run):
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "partition":
        figures = _etcd.partition_splits(members=args.members, tries=args.tries or 20)
    elif args.mode == "members":
        figures = _etcd.member_losses(members=args.members, tries=args.tries or 20)
    else:
        figures = _etcd.site_losses(members=args.members, tries=args.tries or 10, state_dir=args.out / "cluster")
    (args.out / f"{args.mode}.json").write_text(json.dumps(figures, indent=1))
    print(_etcd.write(args.out, run, args.mode, figures))
    print(f"\nreport: {args.out / 'report.html'}")
    return 0


def run_bench(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = _bench.bench(stores_to_run=args.stores.split(","), rounds=args.rounds, seconds=args.seconds,
                          connections=args.connections, port=args.port, out=args.out, server=args.server)
    base = args.stores.split(",")[0]
    print(f"wrk, {args.connections} connections, {args.rounds} rounds of {args.seconds} s, medians (ratios: "
          f"median and min-max of the rounds); one instance per store, served by {args.server}")
    ceiling = report["stores"]["ceiling"]["poll_direct"]
    print(f"ceiling (bare Django, same server): {ceiling['rps']:.0f} req/s, {ceiling['server_us']:.0f} µs of "
          "server CPU a request")
    print("| store | poll mix direct req/s | to ceiling | server CPU µs a request | ceiling's CPU to it "
          "| through HAProxy req/s | to ceiling | to {base} "
          "| p50 ms | p99 ms | login req/s | to {base} | wrk CPU |".replace("{base}", base))
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for store, mixes in report["stores"].items():
        if store == _bench.CEILING:
            continue
        direct, lb, login = mixes["poll_direct"], mixes["poll_lb"], mixes["login"]
        print(f"| {store} | {direct['rps']:.0f} | {_spread(direct['to_ceiling'])} | {direct['server_us']:.0f} "
              f"| {_spread(direct['cpu_to_ceiling'])} | {lb['rps']:.0f} "
              f"| {_spread(lb['to_ceiling'])} | {_spread(lb['to_base'])} | {lb['p50_ms']:.2f} | {lb['p99_ms']:.2f} "
              f"| {login['rps']:.0f} | {_spread(login['to_base'])} | {lb['generator_cpu']:.0%} |")
    print("\nserver CPU a request straight to the instance (median, min-max of the rounds), beside the floor "
          "and the stock engines; store commands a request, counted by the stores (R Redis, M memcached; "
          "database statements: tests/test_roundtrips.py)")
    print(_bench_cost.table(report))
    lb = report["load_balancer"]
    print(f"\nload balancer: p50 {lb['p50_through_lb_ms']} ms through HAProxy, {lb['p50_direct_ms']} ms "
          f"direct ({lb['added']:+.0%}), one connection, {lb['store']} sessions")
    for target in report["targets"]:
        print(f"{'met' if target['met'] else 'NOT met'}: {target['target']} ({target['figure']} against "
              f"{target['needed']})")
    print(_bench.durability())
    print(f"figures: {args.out / 'bench.json'}")
    return 0


def run_bench_profile(args):
    out = args.out / args.sessions.replace(":", "-")
    out.mkdir(parents=True, exist_ok=True)
    report = _profile.profile(args.sessions, seconds=args.seconds, connections=args.connections, port=args.port,
                              out=out, server=args.server)
    print(f"{args.sessions}: poll mix straight to one instance ({args.server}), wrk {args.connections} connections "
          f"for {args.seconds} s, {report['rps']:.0f} req/s, {report['server_us']:.0f} µs of server CPU a request; "
          f"sampled by {report['profiler']} at {report['rate']} Hz")
    print(_profile.table(report))
    print("\nstore commands a request (counted by the stores; database statements: tests/test_roundtrips.py)")
    for kind, counts in report["commands"].items():
        print(f"  {kind}: {', '.join(f'{n:g} {store}' for store, n in counts.items()) or 'none'}")
    (out / "profile.json").write_text(json.dumps(report, indent=1))
    print(f"figures: {out / 'profile.json'}; samples: {out / 'py-spy.txt'}")
    return 0


def run_bench_replication(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = _replication_bench.bench(
        stores=args.stores.split(","), replicas=[int(n) for n in args.replicas.split(",")],
        sync=args.sync.split(","), rounds=args.rounds, seconds=args.seconds, connections=args.connections,
        out=args.out)
    print(f"wrk, {args.connections} connections, {args.rounds} rounds of {args.seconds} s per cluster and write, "
          "medians; (to N=0: the median and min-max of each round's ratio); one instance per cluster; "
          f"{_bench.durability()}")
    print(_replication_bench.table(report))
    print(f"chart: {args.out / 'replication.svg'}; figures: {args.out / 'bench-replication.json'}")
    return 0


def run_bench_servers(args):
    """For each server: one memory instance and the ceiling under it, in alternating rounds."""
    rows = []
    for server in args.servers.split(","):
        print(f"server {server}", file=sys.stderr)
        report = _bench.bench(stores_to_run=["memory"], rounds=args.rounds, seconds=args.seconds,
                              connections=args.connections, port=args.port, out=args.out / server.replace(":", "-"),
                              server=server)
        memory = report["stores"]["memory"]
        rows.append({"server": server, "ceiling_rps": report["stores"][_bench.CEILING]["poll_direct"]["rps"],
                     **{f"direct_{k}": memory["poll_direct"][k] for k in ("rps", "p50_ms", "p99_ms", "to_ceiling")},
                     "lb_rps": memory["poll_lb"]["rps"], "lb_to_direct": memory["lb_to_direct"]})
    (args.out / "servers.json").write_text(json.dumps(rows, indent=1))
    print(f"memory stores, poll mix straight to the instance; wrk, {args.connections} connections, "
          f"{args.rounds} rounds of {args.seconds} s; {_bench.durability()}")
    print("| server | ceiling req/s | poll mix req/s | to its ceiling | p50 ms | p99 ms | through HAProxy req/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['ceiling_rps']:.0f} | {r['direct_rps']:.0f} | {_spread(r['direct_to_ceiling'])} "
              f"| {r['direct_p50_ms']:.2f} | {r['direct_p99_ms']:.2f} | {r['lb_rps']:.0f} |")
    return 0


def run_bench_against(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = _bench.bench_against(args.ref, rounds=args.rounds, seconds=args.seconds,
                                  connections=args.connections, out=args.out, server=args.server)
    print(f"memory stores, poll mix, one instance each; wrk, {args.connections} connections, {args.rounds} "
          f"rounds of {args.seconds} s, alternating; medians (ratio: median and min-max of the rounds)")
    print(f"| path | {args.ref} req/s | this req/s | this / {args.ref} | {args.ref} p99 ms | this p99 ms |")
    print("|---|---|---|---|---|---|")
    for path, label in (("direct", "straight to the instance"), ("lb", "through HAProxy")):
        row = report[path]
        print(f"| {label} | {row['rps'][args.ref]:.0f} | {row['rps']['this']:.0f} | {_spread(row['ratio'])} "
              f"| {row['p99_ms'][args.ref]:.1f} | {row['p99_ms']['this']:.1f} |")
    print(f"figures: {args.out / 'against.json'}")
    return 0


def _spread(ratio):
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"


def run_micro(kind, stores, argument):
    figures = _bench.micro(kind, stores_to_run=stores, argument=argument)
    if kind == "sessions":
        print("| store | load µs | save µs | bytes per session |\n|---|---|---|---|")
        for row in figures:
            print(f"| {row['store']} | {row['load_us']} | {row['save_us']} | {row['bytes']} |")
    else:
        print("| store | online | heartbeat µs | poll µs (changes since) | full list µs "
              "| in Redis: heartbeat µs | in Redis: poll µs |\n|---|---|---|---|---|---|---|")
        for row in figures:
            print(f"| {row['store']} | {row['online']} | {row['heartbeat_us']} | {row['poll_us']} "
                  f"| {row['full_list_us']} | {row['heartbeat_server_us'] or '-'} | {row['poll_server_us'] or '-'} |")
    print(_bench.durability())
    print(json.dumps(figures))
    return 0


def run_post_cost(args):
    figures = _bench.post_cost(args.databases.split(","), args.repeat)
    print("| database | µs per post before (no room lock) | after (room lock and mark) | added µs | ratio |\n"
          "|---|---|---|---|---|")
    for row in figures:
        print(f"| {row['database']} | {row['before_us']} | {row['after_us']} | {row['added_us']} | {row['ratio']} |")
    print(_bench.durability())
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
