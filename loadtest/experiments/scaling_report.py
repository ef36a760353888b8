"""`scaling`'s figures from its history alone: scaling.json, its table, its charts and its page.

`scaling` (scaling.py) records its parameters (the "started" sample: the
capacity steps' bounds, the rounds, the cgroup version, the machine), then
one scenario per configuration, shape and round: a sample naming them
("variant", "instances", "cores", "round"), then the capacity step's own
samples (loadtest/experiments/capacity.py: each step's readings, the
quotas' throttling). report() judges each capacity step from those
readings and takes the medians of the rounds, by the run and by `python -m
loadtest recheck` alike, so a recheck writes the same scaling.json, whose
format is the one it always had.
"""

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from loadtest.experiments import capacity
from loadtest.harness import recorded
from loadtest.harness.history import scenarios
from loadtest.reports import page
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "scaling"
SITE_CPUS = "0"  # the site tier's CPU (scaling.py pins the instances there, the rest elsewhere)


def started(out, *, command, steps, rounds, cgroup, machine):
    """The run's history in out, its parameters first, before its first scenario: the steps' bounds, the rounds,
    the cgroup version and the machine (scaling.json's plan)."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "bounds": asdict(steps), "rounds": rounds, "cgroup": cgroup, "machine": machine})


def shape(history, *, variant, instances, cores, round_number):
    """Record which configuration and shape the capacity step that follows in this scenario measures."""
    history.sample(variant=variant, instances=instances, cores=cores, round=round_number)


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: scaling.json (its plan and rows), its table, charts and page; returns
    ({"plan", "rows"}, None).

    No verdict: the page compares the shapes, and the exit status never depended on them.
    """
    given, events = recorded.load(out)
    steps = capacity.Steps(**given["bounds"])
    measured = {}
    for mine in scenarios(events).values():
        named = next((e for e in mine if e["type"] == "sample" and "variant" in e), None)
        record = capacity.record_of(mine, steps)
        if named and record:
            measured.setdefault((named["variant"], named["instances"], named["cores"]), []).append(record)
    figures = {"plan": {"steps": steps.describe(), "rounds": given["rounds"], "cgroup": given["cgroup"],
                        "machine": given["machine"]},
               "rows": with_ratios(summarise(measured))}
    write(Path(out), run, figures, finished=finished)
    return figures, None


def summarise(measured):
    """One row per variant and shape: medians of its rounds."""
    return [_row(name, instances, cores, records) for (name, instances, cores), records in measured.items()]


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
    xs = sorted(dict.fromkeys(r["instances"] for r in rows))  # the shapes measured: 1, 2 and 4 instances

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


def write(out, run, figures, *, finished=None):
    """scaling.json (the figures: plan, rows), scaling.md, the charts as SVG files, and the page (reports/page.py);
    finished: when the run ended, if not now (a recheck)."""
    plan, rows = figures["plan"], figures["rows"]
    out.mkdir(parents=True, exist_ok=True)
    svgs = charts(rows)
    for name, svg in svgs.items():
        (out / f"{name}.svg").write_text(svg)
    (out / "scaling.json").write_text(json.dumps({"plan": plan, "rows": rows}, indent=1))
    (out / "scaling.md").write_text(f"{table(rows).markdown()}\n")
    page.write(out, run, title="Scale-up against scale-out: one core, cut into 1, 2 or 4 instances",
               headline=headline(rows), finished=finished, sections=[
                   ("", page.paragraphs(f"Capacity steps: {plan['steps']}. {plan['rounds']} round(s), the shapes' "
                                        "order alternating; figures are medians, ranges in brackets.",
                                        limits_text(plan["cgroup"]), "Every figure is computed from history.jsonl "
                                        f"(recheck: python -m loadtest recheck {out}).")),
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
