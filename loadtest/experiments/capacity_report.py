"""The capacity step's output: a sentence and a table per configuration, and the capacity command's page."""

import json

from loadtest.experiments.kill_cells import generator_cell, num, share_cell
from loadtest.reports import page, tables
from loadtest.reports.tables import Table

CAPACITY_COLUMNS = ["users", "req/s", "p50 ms", "p99 ms", "failed", "generator CPU", "machine busy",
                    "peak queued", "held"]


def capacity_held(c):
    return f"held {c['rps']:g} req/s with {c['users']} users" if c["users"] else "held no step"


def capacity_line(c):
    """What a capacity step found, in one sentence after the configuration's name."""
    best = capacity_held(c)
    transient = c.get("transient")
    passed = (f"; {', '.join(map(str, transient))} users went over the bounds once and the next step held"
              if transient else "")
    return f"{best}{passed}; stopped {c['stopped_by']}. Steps: {c['described']}."


def capacity_tables(capacities):
    """One table per configuration: its steps, under a line that says what the steps found."""
    return [Table.of(CAPACITY_COLUMNS, [[str(row["users"]), f"{row['rps']:g}", num(row["p50_ms"]), num(row["p99_ms"]),
                                         f"{row['failed_pct']:.2f}%", generator_cell(row),
                                         share_cell(row["machine_busy"]), num(row["queued_peak"]),
                                         "yes" if row["held"] else "no"] for row in c["steps"]],
                     title=c["config"], caption=capacity_line(c)) for c in capacities]


def write(out, run, figures, *, finished=None):
    """capacity.json (the rows) and the capacity command's page: each configuration's steps, and the rate it held;
    finished: when the run ended, if not now (a recheck)."""
    capacities, described = figures["rows"], figures["described"]
    (out / "capacity.json").write_text(json.dumps(capacities, indent=1))
    headline = "; ".join(f"{c['config']}: {capacity_held(c)}" for c in capacities)
    page.write(out, run, title="Capacity: the highest request rate held within bounds", headline=headline,
               finished=finished,
               sections=[("", page.paragraphs(f"Capacity steps: {described}.", "Every figure is computed from "
                                              f"history.jsonl (recheck: python -m loadtest recheck {out}).")),
                         ("", tables.html(capacity_tables(capacities)))])
