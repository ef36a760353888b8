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
their range.
"""

import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.cluster import Topology, cgroup_version
from loadtest.cli import listed
from loadtest.experiments import capacity
from loadtest.experiments import configs as experiment
from loadtest.harness.locust import ROOT
from loadtest.reports import page
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "scaling"
HELP = "scale-up against scale-out: one core for the site tier, cut into 1, 2 or 4 instances by cgroup CPU quotas"
INDEXED = True  # its report is listed in results/index.html
SHAPES = [(1, 1.0), (2, 0.5), (4, 0.25)]  # (instances, cores each): one core in all
SITE_CPUS = "0"
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
    parser.add_argument("--from-raw", type=Path, metavar="SCALING_RAW_JSON",
                        help="summarise an earlier run's measurements again (its scaling-raw.json); runs nothing")
    parser.add_argument("--docs", action="store_true",
                        help=f"also put the table and charts in {PAGE} and docs/results/scaling/")
    capacity.add_step_arguments(parser, capacity.Steps(start_users=40, step=0.2, hold=10))


def main(args):
    if args.from_raw:
        measured = read_raw(args.from_raw)
        args.rounds = max(len(records) for records in measured.values())
        rows = with_ratios(summarise(measured))
        described = next(iter(measured.values()))[0]["described"]
    else:
        steps = capacity.steps_of(args)
        rows = with_ratios(measure(variants(listed(args.configs), listed(args.sync)), steps, rounds=args.rounds,
                                   port=args.port, out=args.out,
                                   progress=lambda what: print(what, file=sys.stderr, flush=True)))
        described = steps.describe()
    plan = {"steps": described, "rounds": args.rounds, "cgroup": cgroup_version(), "machine": page.machine()}
    write(args.out, args.run, {"plan": plan, "rows": rows})
    print(f"capacity steps: {described}; {args.rounds} round(s); {page.machine()}")
    print(table(rows).markdown())
    print(limits_text(plan["cgroup"]))
    if args.docs:
        to_docs(args.out, rows, plan, args.run.command)
        print(f"{PAGE} and docs/results/scaling/ updated")
    print(f"report: {args.out / 'report.html'}")
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


def measure(variants_to_run, steps, *, rounds, port, out, progress=print):
    """Measure every variant in every shape, rounds alternating the shapes' order; return the rows."""
    # This process and everything it starts (Locust and its workers) stay off the site tier's CPU, and
    # ahead of other work on theirs, as HAProxy and the stores are (deploy/cgroups.py, WEIGHT_FACTOR).
    os.sched_setaffinity(0, other_cpus())
    os.nice(GENERATOR_NICE)
    measured = {}
    for round_number in range(rounds):
        order = SHAPES if round_number % 2 == 0 else SHAPES[::-1]
        for variant in variants_to_run:
            for instances, cores in order:
                progress(f"round {round_number + 1}/{rounds}: {variant.name}, {instances} x {cores:g} core")
                record = capacity.measure(
                    variant.config, steps, instances=instances, port=port, out=out,
                    label=f"{variant.name.replace(', ', '-').replace(' ', '-')}-{instances}x{cores:g}-r{round_number}",
                    processes=GENERATOR_PROCESSES, cpu_quota=cores, site_cpus=SITE_CPUS, **variant.up_options())
                measured.setdefault((variant.name, instances), []).append(record)
                (out / "scaling-raw.json").write_text(json.dumps(
                    {f"{name} {n}": records for (name, n), records in measured.items()}, indent=1))
    return summarise(measured)


def read_raw(path):
    """The measurements an earlier run saved (scaling-raw.json), as measure() keeps them."""
    return {(key.rsplit(" ", 1)[0], int(key.rsplit(" ", 1)[1])): records
            for key, records in json.loads(path.read_text()).items()}


def summarise(measured):
    """One row per variant and shape: medians of its rounds."""
    cores = dict(SHAPES)
    return [_row(name, instances, cores[instances], records) for (name, instances), records in measured.items()]


def _row(name, instances, cores, records):
    rates = [r["rps"] or 0 for r in records]
    # The highest rate of any step held, beside the capacity: rounds judged before the capacity step let
    # a passing burst by stopped at the first step over the bounds (docs/experiments/scaling.md, the table).
    best = [max((s["rps"] for s in r["steps"] if s["held"]), default=0) for r in records]
    held = [r for r in records if r["rps"]]
    p99s = [next(s["p99_ms"] for s in r["steps"] if s["users"] == r["users"]) for r in held]
    throttled = [sum(t["seconds"] for t in r["throttled"].values()) for r in records]
    return {
        "variant": name, "instances": instances, "cores_each": cores,
        "rps": statistics.median(rates), "rps_range": [min(rates), max(rates)],
        "best_rps": statistics.median(best), "best_range": [min(best), max(best)],
        "users": statistics.median([r["users"] or 0 for r in records]),
        "p99_ms": statistics.median(p99s) if p99s else None,
        "throttled_s": round(statistics.median(throttled), 1),
        "machine_limited": any(s["machine_limit"] for r in records for s in r["steps"] if s["users"] == r["users"]),
        "generator_saturated": any(s["generator_saturated"] for r in records for s in r["steps"]),
        "stopped_by": [r["stopped_by"] for r in records],
    }


def with_ratios(rows):
    """Each row's rate over its variant's one-instance rate, and the sync variant's over its plain one."""
    one = {r["variant"]: r["rps"] for r in rows if r["instances"] == 1}
    plain = {(r["variant"], r["instances"]): r["rps"] for r in rows}
    for row in rows:
        row["to_one"] = round(row["rps"] / one[row["variant"]], 2) if one.get(row["variant"]) else None
        base = plain.get((row["variant"].removesuffix(", sync replica"), row["instances"]))
        row["sync_to_plain"] = (round(row["rps"] / base, 2) if row["variant"].endswith("sync replica") and base
                                else None)
    return rows


COLUMNS = [
    ("configuration", lambda r: r["variant"]),
    ("instances x cores", lambda r: f"{r['instances']} x {r['cores_each']:g}"),
    ("capacity req/s", lambda r: f"{r['rps']:g}" + (f" ({r['rps_range'][0]:g}-{r['rps_range'][1]:g})"
                                                    if r["rps_range"][0] != r["rps_range"][1] else "")),
    ("users", lambda r: f"{r['users']:g}"),
    ("highest step held req/s", lambda r: f"{r['best_rps']:g}" + (
        f" ({r['best_range'][0]:g}-{r['best_range'][1]:g})" if r["best_range"][0] != r["best_range"][1] else "")),
    ("to 1 x 1.0", lambda r: "-" if r["to_one"] is None else f"{r['to_one']:.2f}"),
    ("sync to plain", lambda r: "-" if r["sync_to_plain"] is None else f"{r['sync_to_plain']:.2f}"),
    ("p99 ms at capacity", lambda r: "-" if r["p99_ms"] is None else f"{r['p99_ms']:g}"),
    ("quota throttled s", lambda r: f"{r['throttled_s']:g}"),
]


def table(rows):
    """The figures as one Table (reports/tables.py)."""
    return Table(tuple(COLUMNS), tuple(rows))


def charts(rows):
    names = list(dict.fromkeys(r["variant"] for r in rows))
    xs = [n for n, _ in SHAPES]

    def series(key):
        return {name: [next((r[key] for r in rows if r["variant"] == name and r["instances"] == n), None)
                       for n in xs] for name in names}

    return {
        "scaling-capacity": series_chart("Highest rate held, one core cut into 1, 2 or 4 instances", xs,
                                         series("rps"), x_label="instances (1.0, 0.5, 0.25 core each)",
                                         unit="", width=520, legend_columns=2),
        "scaling-p99": series_chart("p99 at that rate (ms)", xs, series("p99_ms"),
                                    x_label="instances (1.0, 0.5, 0.25 core each)", unit="", width=520,
                                    legend_columns=2),
    }


def limits_text(cgroup_version):
    return (f"One 2-core machine, shared with other work: the site tier gets CPU {SITE_CPUS} under cgroup "
            f"{cgroup_version} CPU quotas (the CFS quota, 100 ms periods), and HAProxy, the stores, the "
            "replicas and Locust share the other core, so they compete with each other (and with anything "
            "else on the machine) but not with the site. The instances share one core's caches and memory "
            "bus, and no network separates them: scale-out here costs only processes, never a network hop. "
            "Real machines would add that hop, and their own failures.")


def write(out, run, figures):
    """scaling.json (the figures: plan, rows), scaling.md, the charts as SVG files, and the page (reports/page.py)."""
    plan, rows = figures["plan"], figures["rows"]
    out.mkdir(parents=True, exist_ok=True)
    svgs = charts(rows)
    for name, svg in svgs.items():
        (out / f"{name}.svg").write_text(svg)
    (out / "scaling.json").write_text(json.dumps({"plan": plan, "rows": rows}, indent=1))
    (out / "scaling.md").write_text(f"{table(rows).markdown()}\n")
    page.write(out, run, title="Scale-up against scale-out: one core, cut into 1, 2 or 4 instances",
               headline=headline(rows), sections=[
                   ("", page.paragraphs(f"Capacity steps: {plan['steps']}. {plan['rounds']} round(s), the shapes' "
                                        "order alternating; figures are medians, ranges in brackets.",
                                        limits_text(plan["cgroup"]))),
                   ("", page.charts(svgs.values())),
                   ("", table(rows).html()),
                   ("", page.paragraphs("Stopped by, per round: " + "; ".join(
                       f"{r['variant']} {r['instances']}: {' / '.join(r['stopped_by'])}" for r in rows))),
               ])


def headline(rows):
    """Each configuration's capacity with 1, 2 and 4 instances on the one core."""
    names = list(dict.fromkeys(r["variant"] for r in rows))
    return "; ".join(f"{name}: " + " / ".join(f"{r['rps']:g}" for r in rows if r["variant"] == name)
                     + " req/s with " + " / ".join(str(r["instances"]) for r in rows if r["variant"] == name)
                     + " instances" for name in names)


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
