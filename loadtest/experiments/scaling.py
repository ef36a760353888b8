"""Scale-up against scale-out on one machine: one core for the site tier, cut into 1, 2 or 4 instances.

Every shape gets the same CPU: one instance capped at 1.0 core, two at 0.5,
four at 0.25 (cgroup CPU quotas, deploy's `--cpu-quota`), all on CPU 0
(`--site-cpus 0`); HAProxy, the stores and Locust share the other CPUs.
For each shape and configuration the capacity step (loadtest/experiments/capacity.py)
finds the highest request rate held within its bounds, and the p99 there.
Configurations may also run with Redis behind Sentinel with one
synchronous replica (`--redis sentinel --redis-sync 1`): every session
write waits for a replica, whose CPU comes out of the same other core.

Rounds alternate the order of the shapes, so drift on a shared machine
does not favour one shape; each figure is the median of its rounds, with
their range. Every capacity step goes into history.jsonl as it ends, one
scenario per configuration, shape and round, and scaling.json, the table,
the charts and the page are computed from that history alone
(scaling_report.py), so `python -m loadtest recheck` gives them again.
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.cluster import Topology, cgroup_version
from loadtest.cli import listed
from loadtest.experiments import capacity, scaling_report
from loadtest.experiments import configs as experiment
from loadtest.experiments.scaling_report import SITE_CPUS, charts, limits_text, table
from loadtest.harness.locust import ROOT
from loadtest.reports import page

NAME = scaling_report.NAME
HELP = "scale-up against scale-out: one core for the site tier, cut into 1, 2 or 4 instances by cgroup CPU quotas"
INDEXED = True  # its report is listed in results/index.html
SHAPES = [(1, 1.0), (2, 0.5), (4, 0.25)]  # (instances, cores each): one core in all
GENERATOR_NICE = -10  # about 9 times a default process's CPU weight
# One Locust process: one core's worth of site serves a few hundred users at
# most, and every step reports the generator's CPU.
GENERATOR_PROCESSES = 1
SYNC = Topology(redis="sentinel", redis_sync=1)


def add_arguments(parser):
    parser.add_argument("--configs", default="memory+sticky,redis,cached_db")
    parser.add_argument("--sync", default="redis",
                        help="configurations measured again with --redis sentinel --redis-sync 1 ('' for none)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, alternating the shapes' order")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--out", type=Path, default=Path("results") / "scaling")
    parser.add_argument("--docs", action="store_true",
                        help=f"also put the table and charts in {PAGE} and docs/results/scaling/")
    capacity.add_step_arguments(parser, capacity.Steps(start_users=40, step=0.2, hold=10))


def main(args):
    steps = capacity.steps_of(args)
    to_run = variants(listed(args.configs), listed(args.sync))
    with scaling_report.started(args.out, command=args.run.command, steps=steps, rounds=args.rounds,
                                cgroup=cgroup_version(), machine=page.machine()) as recorded:
        measure(to_run, steps, rounds=args.rounds, port=args.port, out=args.out, history=recorded,
                progress=lambda what: print(what, file=sys.stderr, flush=True))
    figures, _ = scaling_report.report(args.out, args.run)
    plan, rows = figures["plan"], figures["rows"]
    print(f"capacity steps: {plan['steps']}; {args.rounds} round(s); {page.machine()}")
    print(table(rows).markdown())
    print(limits_text(plan["cgroup"]))
    if args.docs:
        to_docs(args.out, rows, plan, args.run.command)
        print(f"{PAGE} and docs/results/scaling/ updated")
    print(f"figures: {args.out / 'scaling.json'}; report: {args.out / 'report.html'}")
    return 0


@dataclass(frozen=True)
class Variant:
    """A configuration, maybe with synchronous Redis replicas."""

    config: experiment.Config
    sync: bool = False

    @property
    def name(self):
        return f"{self.config.name}, sync replica" if self.sync else self.config.name

    def up_options(self):
        # Not durable (no fsync): this compares CPU, and a commit waiting on a disk that other
        # work keeps busy would measure the disk. No latency relays: a relay's hop on every
        # connection would take CPU from the same cores in every shape, which no real deployment pays.
        return {"durable": False, "relays": False, **({"topology": SYNC} if self.sync else {})}


def variants(configs, sync_configs):
    found = [Variant(experiment.parse_config(name)) for name in configs]
    for name in sync_configs:
        config = experiment.parse_config(name)
        if "redis" not in config.sessions:
            raise ValueError(f"--sync {name}: synchronous replicas are Redis's; choose a Redis session store")
        found.append(Variant(config, sync=True))
    return found


def other_cpus():
    """The CPUs the load generator may use: all but the site tier's."""
    return {cpu for cpu in range(os.cpu_count() or 1)} - {int(SITE_CPUS)}


def measure(variants_to_run, steps, *, rounds, port, out, history, progress=print):
    """Measure every variant in every shape, rounds alternating the shapes' order, into the history: a scenario
    per variant, shape and round, naming them (scaling_report.shape) before the capacity step's own samples."""
    # This process and everything it starts (Locust and its workers) stay off the site tier's CPU, and
    # ahead of other work on theirs, as HAProxy and the stores are (deploy/cgroups.py, WEIGHT_FACTOR).
    os.sched_setaffinity(0, other_cpus())
    os.nice(GENERATOR_NICE)
    for round_number in range(rounds):
        order = SHAPES if round_number % 2 == 0 else SHAPES[::-1]
        for variant in variants_to_run:
            for instances, cores in order:
                progress(f"round {round_number + 1}/{rounds}: {variant.name}, {instances} x {cores:g} core")
                history.scenario = f"{variant.name}, {instances} x {cores:g}, round {round_number + 1}"
                scaling_report.shape(history, variant=variant.name, instances=instances, cores=cores,
                                     round_number=round_number + 1)
                capacity.measure(
                    variant.config, steps, instances=instances, port=port, out=out, history=history,
                    label=f"{variant.name.replace(', ', '-').replace(' ', '-')}-{instances}x{cores:g}-r{round_number}",
                    processes=GENERATOR_PROCESSES, cpu_quota=cores, site_cpus=SITE_CPUS, **variant.up_options())


PAGE = "docs/experiments/scaling.md"
PAGE_START, PAGE_END = "<!-- scaling:start -->", "<!-- scaling:end -->"


def to_docs(out, rows, plan, command):
    """Put the table and charts between the scaling page's markers, the charts under docs/results/scaling/."""
    page = ROOT / PAGE
    charts_dir = ROOT / "docs" / "results" / "scaling"
    charts_dir.mkdir(parents=True, exist_ok=True)
    for name in charts(rows):
        (charts_dir / f"{name}.svg").write_text((out / f"{name}.svg").read_text())
    text = page.read_text()
    if PAGE_START not in text or PAGE_END not in text:
        raise RuntimeError(f"{PAGE} has no {PAGE_START} ... {PAGE_END} block for the table")
    block = "\n".join([
        PAGE_START,
        f"`{command}` ({plan['machine']}; capacity steps {plan['steps']}; {plan['rounds']} round(s), "
        "medians with the rounds' range):",
        "",
        table(rows).markdown(),
        "",
        "![Highest rate held by 1, 2 and 4 instances sharing one core](../results/scaling/scaling-capacity.svg)",
        "![p99 at the highest rate held](../results/scaling/scaling-p99.svg)",
        PAGE_END,
    ])
    before, rest = text.split(PAGE_START, 1)
    page.write_text(before + block + rest.split(PAGE_END, 1)[1])
