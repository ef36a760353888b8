"""The capacity step: the highest request rate a configuration holds within its bounds.

Users rise in fixed steps (loadtest/locustfiles/capacity_shape.py); each step ramps,
then holds. A step is held when, over its hold, p99 stayed at or under the
bound and no more than the allowed share of requests failed. The capacity
is the highest step held before two steps in a row that were not: one step
over the bounds that the next step passes is a moment of somebody else's
load on a shared machine (seen here, in steps of +25 %: 307 ms at 125 users,
then 156, 195 and 244 users held), reported as such, not taken as the limit. A step whose Locust
process was saturated, or whose machine had no idle CPU, is marked so: the
limit it found is the generator's or the machine's, not only the site's.

Every measurement goes into the run's history as it ends (Locust writes
its recording when it exits), in the scenario the caller set: one sample
per step with its readings over the hold ("capacity_step": users,
requests, failures, req/s, p50 and p99 as the recorder counted them,
HAProxy's peak queue, Locust's CPU and the machine's, as the sampler read
them), then how long CPU quotas held each instance back ("throttled").
judge() decides from those readings alone, so the capacity a run prints
and the one `python -m loadtest recheck` finds are one computation
(record_of). `capacity` records one scenario per configuration, `scaling`
one per configuration, shape and round.
"""

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy import cluster as deploy
from loadtest.cli import listed
from loadtest.experiments import capacity_report
from loadtest.experiments import configs as experiment
from loadtest.harness import locust as driver
from loadtest.harness import recorded
from loadtest.harness.analysis import machine_figures, window_figures
from loadtest.harness.history import scenarios
from loadtest.harness.sampler import Sampler
from loadtest.reports import tables
from loadtest.reports.page import machine

NAME = "capacity"
HELP = "the highest request rate each configuration holds within bounds"
INDEXED = True  # its report is listed in results/index.html
MACHINE_BUSY = 0.95  # mean share of all cores in use over a hold: the machine has nothing left


def users_at(step, *, start_users, step_fraction):
    """The users of step `step` (0-based): start_users raised by step_fraction each step."""
    users = start_users
    for _ in range(step):
        users = max(users + 1, round(users * (1 + step_fraction)))
    return users


@dataclass(frozen=True)
class Steps:
    start_users: int = 50
    step: float = 0.10  # each step has this much more users than the last
    ramp: float = 5  # seconds to reach a step's users
    hold: float = 20  # seconds held at them, measured
    p99_ms: float = 250
    failed_pct: float = 0.1
    max_users: int = 1000

    def count(self):
        """How many steps there are at most, up to max_users."""
        n = 0
        while users_at(n, start_users=self.start_users, step_fraction=self.step) <= self.max_users:
            n += 1
        return n

    def describe(self):
        return (f"from {self.start_users} users, +{self.step:.0%} a step, each ramped over {self.ramp:g} s and held "
                f"{self.hold:g} s, until p99 passes {self.p99_ms:g} ms or more than {self.failed_pct:g}% of "
                f"requests fail, two steps in a row (at most {self.max_users} users)")


def measure(config, steps, *, instances, port, out, progress=None, label=None, processes=None, history=None,
            **up_options):
    """Run the steps against a fresh cluster of `config`; return its capacity record.

    up_options: more of deploy.up's options (CPU limits, a topology); with a
    CPU quota the record says how long the quota held each instance back.
    label: the recording's name, when one configuration runs in several shapes.
    processes: Locust's processes (default: enough for steps.max_users).
    history: the run's history, whose current scenario gets the steps'
    readings (record()); the record is judged from those readings alone.
    """
    state_dir = out / "cluster"
    recording = out / "raw" / f"capacity-{label or config.name}"
    cluster = experiment.up(config, instances=instances, port=port, state_dir=state_dir, **up_options)
    try:
        longest = steps.count() * (steps.ramp + steps.hold) + 5
        os.environ["LOADTEST_CAPACITY"] = json.dumps(asdict(steps))
        try:
            locust = driver.start_locust(users=steps.max_users, run_time=longest, ramp=steps.ramp,
                                         url=cluster.url, state_dir=state_dir, recording=recording,
                                         shape="capacity_shape.py", processes=processes)
        finally:
            del os.environ["LOADTEST_CAPACITY"]
        started = time.time()
        with Sampler(state_dir, locust.pid) as sampler:
            while locust.poll() is None and time.time() - started < longest + driver.STOP_TIMEOUT + 30:
                if progress:
                    progress(f"capacity step, {time.time() - started:.0f} s")
                time.sleep(1)
        driver.wait_locust(locust, 10)
        raw = driver.read_recording(recording, locust.recordings)
        throttled = deploy.cpu_throttled(state_dir=state_dir)
    finally:
        deploy.down(state_dir)
    readings = step_readings(raw, sampler.samples, steps)
    if history is not None:
        record(history, config.name, readings, throttled)
    return {**judge(readings, steps, config.name), "throttled": throttled}


def step_readings(raw, samples, steps):
    """Each step's readings over its hold: its users, the recorder's requests, failures, rate and latency
    percentiles of the requests that started in the hold, and the sampler's HAProxy peaks and CPU."""
    readings = []
    for index, (at, users) in enumerate(raw["steps"]):
        first = math.ceil(at + steps.ramp)
        last = int(at + steps.ramp + steps.hold)
        if index + 1 < len(raw["steps"]):  # never into the next step's ramp, which a late tick here brings closer
            last = min(last, math.floor(raw["steps"][index + 1][0]))
        readings.append({"users": users, **window_figures(raw["seconds"], first, last),
                         **machine_figures(samples, first, last)})
    return readings


def record(history, config_name, readings, throttled):
    """One configuration's measurement into the history's current scenario: a sample per step, then how long CPU
    quotas held each instance back."""
    for reading in readings:
        history.sample(config=config_name, capacity_step=reading)
    history.sample(config=config_name, throttled=throttled)


def record_of(events, steps):
    """The capacity record measure() returned, from one scenario's events alone; None for a measurement the run
    did not finish (no "throttled" sample)."""
    samples = [e for e in events if e["type"] == "sample" and "config" in e]
    throttled = next((e["throttled"] for e in samples if "throttled" in e), None)
    if throttled is None:
        return None
    readings = [e["capacity_step"] for e in samples if "capacity_step" in e]
    return {**judge(readings, steps, samples[0]["config"]), "throttled": throttled}


def judge(readings, steps, name):
    """Each step's row (held or not, the machine the limit or not, its readings), and the capacity: the highest
    step held before two in a row were not."""
    rows = []
    for reading in readings:
        held = (reading["requests"] > 0 and reading["p99_ms"] <= steps.p99_ms
                and reading["failed_pct"] <= steps.failed_pct)
        rows.append({"users": reading["users"], "held": held,
                     "machine_limit": (reading["machine_busy"] or 0) > MACHINE_BUSY,
                     **{key: value for key, value in reading.items() if key != "users"}})
    end = next((i for i in range(len(rows) - 1) if not rows[i]["held"] and not rows[i + 1]["held"]), None)
    if end is None and rows and not rows[-1]["held"]:
        end = len(rows) - 1
    counted = rows if end is None else rows[:end]
    held = [row for row in counted if row["held"]]
    best = held[-1] if held else None
    return {"config": name, "steps": rows, "bounds": asdict(steps), "described": steps.describe(),
            "users": best["users"] if best else None, "rps": best["rps"] if best else None,
            "transient": [row["users"] for row in counted if not row["held"]],
            "stopped_by": _why(rows[end] if end is not None else None, steps, rows[-1]["users"] if rows else None)}


def _why(row, steps, last_users):
    """Why the steps ended, in words, saying so when the generator or the machine was the limit."""
    if row is None:
        if last_users is None:
            return "with no step run: the recording has none (did Locust start?)"
        if users_at(1, start_users=last_users, step_fraction=steps.step) > steps.max_users:
            return f"with no step over the bounds up to {steps.max_users} users"
        return ("because Locust's own statistics put the last steps over the bounds, though the recorder, "
                "counting by start time, did not: the capacity is at least the last step's")
    reasons = []
    if row["p99_ms"] is None or row["p99_ms"] > steps.p99_ms:
        reasons.append(f"p99 {row['p99_ms']} ms over {steps.p99_ms:g} ms")
    if row["failed_pct"] > steps.failed_pct:
        reasons.append(f"{row['failed_pct']}% failed")
    text = f"at {row['users']} users: " + " and ".join(reasons)
    if row["generator_saturated"]:
        text += f" (the load generator was saturated: {row['generator_cpu']:.0%} of a core in one process)"
    elif row["machine_limit"]:
        text += (f" (the machine's cores were {row['machine_busy']:.0%} busy: the machine, not only the site, "
                 "is the limit)")
    return text


def add_arguments(parser):
    parser.add_argument("--configs", default="redis")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--out", type=Path, default=Path("results") / "capacity")
    add_step_arguments(parser)


def main(args):
    steps = steps_of(args)
    names = list(dict.fromkeys(listed(args.configs)))  # one scenario each
    configs = [experiment.parse_config(name) for name in names]  # a bad name fails before anything starts
    with started(args.out, command=args.run.command, configs=names, instances=args.instances,
                 steps=steps) as history:
        for name, config in zip(names, configs):
            print(f"{name}: capacity step, {steps.describe()}", file=sys.stderr)
            history.scenario = name
            # No latency relays (deploy up --no-relays): a capacity is the site's and its stores', not a relay's.
            measure(config, steps, instances=args.instances, port=args.port, out=args.out, relays=False,
                    history=history)
    rows, _ = report(args.out, args.run)
    print(f"capacity steps: {steps.describe()}; {machine()}")
    print(tables.markdown(capacity_report.capacity_tables(rows)))
    print(f"figures: {args.out / 'capacity.json'}; report: {args.out / 'report.html'}")
    return 0


def started(out, *, command, configs, instances, steps):
    """The run's history in out, its parameters first, its steps' bounds among them, before any configuration
    runs."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "configs": configs, "instances": instances, "bounds": asdict(steps)})


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each configuration's capacity record, capacity.json and the page; (rows, None).

    The run and `python -m loadtest recheck` both call it. No verdict: the
    bounds decide each step, and the exit status never depended on them.
    """
    given, events = recorded.load(out)
    steps = Steps(**given["bounds"])
    rows = [row for row in (record_of(mine, steps) for mine in scenarios(events).values()) if row]
    capacity_report.write(Path(out), run, {"rows": rows, "described": steps.describe()}, finished=finished)
    return rows, None


def add_step_arguments(parser, defaults=None):
    """The capacity step's options, for every command that runs one (run, capacity, scaling)."""
    defaults = defaults or Steps()
    parser.add_argument("--start-users", type=int, default=defaults.start_users, help="the capacity step's first step")
    parser.add_argument("--step", type=float, default=defaults.step, help="each step's users over the last's, minus 1")
    parser.add_argument("--ramp", type=float, default=defaults.ramp, help="seconds each step takes to reach its users")
    parser.add_argument("--hold", type=float, default=defaults.hold, help="seconds each step is held after its ramp")
    parser.add_argument("--p99-bound", type=float, default=defaults.p99_ms, help="ms; a step over it is not held")
    parser.add_argument("--failed-bound", type=float, default=defaults.failed_pct,
                        help="percent of requests; a step with more failed is not held")
    parser.add_argument("--max-users", type=int, default=defaults.max_users)


def steps_of(args):
    """The Steps the options of add_step_arguments ask for."""
    return Steps(start_users=args.start_users, step=args.step, ramp=args.ramp, hold=args.hold, p99_ms=args.p99_bound,
                 failed_pct=args.failed_bound, max_users=args.max_users)


def step_options(steps):
    """The options of add_step_arguments that ask for `steps` (steps_of(parsed) gives them back)."""
    return ["--start-users", str(steps.start_users), "--step", str(steps.step), "--ramp", str(steps.ramp),
            "--hold", str(steps.hold), "--p99-bound", str(steps.p99_ms), "--failed-bound", str(steps.failed_pct),
            "--max-users", str(steps.max_users)]
