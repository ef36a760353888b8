"""python -m loadtest: the kill experiment across session stores, and its report.

For each configuration: a cluster (python -m deploy), a warm-up, Locust
headless, the fault schedule, an audit of every acknowledged message, and
the cluster's end. Then report.html, results.json and summary.md.

A configuration is SESSIONS[+roundrobin|sticky][@TOPOLOGY]: redis,
memory+sticky, redis@sentinel, redis@sentinel-sync1, db@pg, db@pg-any1.
TOPOLOGY is sentinel (Redis: a primary, 2 replicas, 3 Sentinels),
sentinel-sync<k> (k replicas confirm each session write), cluster (Redis
Cluster: 3 primaries, each with a replica), pg (PostgreSQL: a primary, 2
standbys, asynchronous), pg-any<k> or pg-first<k>, patroni or patroni-first<k>.

--faults store-kill|store-pause|replica-kill|store-restart aims the fault
at the store instead of an instance (PostgreSQL if the configuration has
it; else the sessions' etcd, whose leader it kills, or memcached; else
Redis, under Redis Cluster one shard's primary); the experiment then also writes each user's session every
tick, bursts logins around the fault, and reads every session back.
"""

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from loadtest.cli import listed
from loadtest.experiments import capacity, kill_report, kill_run, rolling
from loadtest.experiments.configs import DEFAULT_MATRIX, QUICK_MATRIX, STORE_MATRIX, parse_config
from loadtest.harness import verdict
from loadtest.harness.analysis import headline_failures, summarise
from loadtest.harness.progress import Progress
from loadtest.harness.verdict import judge

NAME = "run"
HELP = "the kill experiment (the default)"
DESCRIPTION = __doc__
INDEXED = True  # its report is listed in results/index.html
QUICK = {"users": 20, "duration": 36, "warmup": 8}  # CI runs this: a fixed small load, no capacity step


def add_arguments(parser):
    parser.add_argument("--configs", help="comma-separated SESSIONS[+LB][@TOPOLOGY], e.g. memory+sticky,redis,"
                        f"redis@sentinel-sync1,db@pg-any1 (default: {','.join(DEFAULT_MATRIX)}; "
                        f"with a store fault: {','.join(STORE_MATRIX)})")
    parser.add_argument("--users", type=int, help="a fixed number of Locust users for every configuration "
                        "(overrides --load; skips the capacity step)")
    parser.add_argument("--load", type=float, default=0.6,
                        help="run each configuration at this fraction of the users it held in its capacity step")
    parser.add_argument("--duration", type=float, default=90, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of load before the measured window")
    parser.add_argument("--faults", default="kill",
                        help="instance faults: kill (default), term, scale, kills; store faults: store-kill "
                             "(SIGKILL the primary; PostgreSQL: then promote), store-pause (SIGSTOP it "
                             f"{kill_run.PAUSE_SECONDS:g} s), replica-kill, store-restart (kill and start the "
                             "primary at once), store-latency (the first primary "
                             f"{kill_run.LATENCY_MS} ms away from 1/3 to 2/3), store-stall (it delivers nothing for "
                             f"{kill_run.STALL_SECONDS} s at 1/3); rolling-restart (each instance in turn stopped "
                             "gracefully and started again, the everyday deploy; ends with a verdict)")
    parser.add_argument("--session-writes", action="store_true",
                        help="under an instance fault too: write each user's session every tick, burst logins "
                             "around the fault and read every session back (the store faults always do)")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8100, help="the experiment cluster's load balancer port")
    parser.add_argument("--runtime", choices=("processes", "swarm"), default="processes",
                        help="swarm: each cluster as Docker Swarm services (python -m deploy images first; "
                             "needs --users; the fault is kill, and Swarm replaces the task at once)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<date-time>)")
    parser.add_argument("--quick", action="store_true",
                        help="3 configurations, 20 users, 36 s each (about 3 minutes); "
                             "exit 1 unless the headline results hold")
    capacity.add_step_arguments(parser)


def main(args):
    if args.out is None:
        args.out = Path("results") / datetime.now().strftime("%Y-%m-%d-%H%M%S")
    if args.quick:
        names, users, duration, warmup = QUICK_MATRIX, QUICK["users"], QUICK["duration"], QUICK["warmup"]
    else:
        names = STORE_MATRIX if args.faults in kill_run.STORE_FAULTS else DEFAULT_MATRIX
        users, duration, warmup = args.users, args.duration, args.warmup
    configs = [parse_config(name) for name in (listed(args.configs) if args.configs else names)]
    twice = sorted({c.name for c in configs if [d.name for d in configs].count(c.name) > 1})
    if twice:
        raise SystemExit(f"--configs names {', '.join(twice)} more than once: a configuration's files are named "
                         "after it, so a second run would overwrite the first's")
    if args.runtime == "swarm" and not users:
        raise SystemExit("--runtime swarm needs --users: the capacity step runs on processes")
    for config in configs:
        kill_run.fault_schedule(args.faults, duration, args.instances, config, args.runtime)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    plan = kill_run.Plan(configs, users, duration, warmup, args.faults, args.instances, args.port, out,
                         load=args.load, runtime=args.runtime, session_writes=args.session_writes)
    progress = Progress(configs, plan.seconds_per_config())
    steps = None if users else capacity.steps_of(args)
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
            held = capacity.measure(config, steps, instances=args.instances, port=args.port, out=out,
                                    progress=lambda what: progress(index, config, what))
            progress.add(time.monotonic() - began)  # the estimate covers the runs; this step took its own time
            capacities.append(held)
            if not held["users"]:
                raise RuntimeError(f"{config.name} held no capacity step ({held['stopped_by']}); "
                                   "lower --start-users or pass --users")
            load = {"fraction": args.load, "capacity_users": held["users"], "capacity_rps": held["rps"]}
        raw = kill_run.run_config(plan, config, index, progress,
                                  users=users or max(1, round(args.load * held["users"])), load=load)
        kill_run.save_record(out, raw)
        results.append(summarise(raw))
    progress.done()

    figures = figures_of(plan.as_json(), capacities, results)
    judged = figures["verdict"]
    summary = kill_report.write(out, args.run, figures)
    print(summary)
    if judged is not None:
        return verdict.ended(out, judged)
    print(f"\nreport: {out / 'report.html'}")
    problems = headline_failures(results)
    if args.quick:
        if problems:
            print("headline results do NOT hold:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("headline results hold: memory+sticky loses sessions after the kill, redis loses none, "
              "no acknowledged message is lost or duplicated.")
    return 0


def figures_of(plan, capacities, results):
    """What the report shows: the plan, the capacity steps, each configuration's figures, and the rolling
    restart's verdict (None under the other faults)."""
    judged = None
    if plan["faults"] == "rolling-restart":
        judged = judge(rolling.hypothesis([parse_config(name) for name in plan["configs"]]),
                       {r["config"]["name"]: r for r in results})
    return {"plan": plan, "capacity": list(capacities), "configs": results, "verdict": judged}


def report(out, run, *, finished=None):
    """Every figure, chart, the verdict and the page again, from what the run saved: results.json's plan and
    capacity steps, and each configuration's record (records/) and Locust recordings (raw/). Returns (results,
    verdict); `python -m loadtest recheck` calls it, and the figures come out as the run wrote them.

    The capacity steps are read as saved: the runs that measured them keep no recording.
    """
    out = Path(out)
    saved = json.loads((out / "results.json").read_text())
    results = [summarise(kill_run.load_record(out, name)) for name in saved["plan"]["configs"]]
    figures = figures_of(saved["plan"], saved["capacity"], results)
    print(kill_report.write(out, run, figures, finished=finished))
    return results, figures["verdict"]
