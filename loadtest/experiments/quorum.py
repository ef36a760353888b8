"""`python -m loadtest quorum`: R + W > N made visible, a quorum exhibit over N Redis nodes (quorum_model.py).

For each shape N/R/W and each number k = 0 .. N of nodes gone (killed or
paused), writers and readers run for a few seconds on one key; the page
shows the stale reads measured beside the chance the quorums miss.
"""

import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

from loadtest.experiments.quorum_model import SHAPES, WRITES_PER_SECOND, Nodes, Shape, miss_chance, run_load
from loadtest.harness import checkers, history, verdict
from loadtest.harness.verdict import Check
from loadtest.reports import page
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "quorum"
HELP = "R + W > N made visible: a quorum exhibit over N Redis nodes"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--shapes", default=",".join(f"{s.n}/{s.r}/{s.w}" for s in SHAPES),
                        help="comma-separated N/R/W")
    parser.add_argument("--seconds", type=float, default=2, help="of load for each number of nodes gone")
    parser.add_argument("--fault", choices=("kill", "pause"), default="kill")
    parser.add_argument("--read-repair", action="store_true")
    parser.add_argument("--distances", default="", metavar="MS,...",
                        help="node i this many ms away each way (the i-th, cycling), through deploy's latency relay; "
                             "e.g. 0.5,2,10,40 (default: all on loopback)")
    parser.add_argument("--out", type=Path, default=Path("results") / "quorum")


def main(args):
    shapes = parse_shapes(args.shapes)
    # Microseconds: a read lasts about a millisecond, and whether a write was acknowledged before it began
    # must be told by the clock.
    with history.History(args.out / history.FILE, experiment=NAME, command=args.run.command, digits=6) as recorded:
        run(shapes, seconds=args.seconds, fault=args.fault, read_repair=args.read_repair,
            distances=parse_distances(args.distances), history=recorded)
    rows, judged = report(args.out, args.run)
    print(table(rows).markdown())
    return verdict.ended(args.out, judged)


def measure(shape, *, seconds, fault="kill", read_repair=False, state_dir, distances=(), history):
    """For k = 0 .. N nodes gone, run the load into the history, one scenario per k."""
    nodes = Nodes(shape.n, state_dir, distances)
    try:
        for gone in range(shape.n + 1):
            nodes.start_all()
            history.scenario = f"{shape}, {gone} gone"
            history.sample(condition="started", parameters={"n": shape.n, "r": shape.r, "w": shape.w, "gone": gone,
                                                            "distances_ms": nodes.distances})
            faults = []
            for index in random.sample(range(shape.n), gone):
                faults.append(history.fault(fault, f"node{index}"))
                nodes.take_down(index, fault)
                history.took_effect(faults[-1])
            client = nodes.client(shape, read_repair=read_repair)
            try:
                run_load(client, seconds=seconds, history=history)
            finally:
                client.close()
            for event in faults:
                history.ended(event)
    finally:
        nodes.stop_all()


def figures(events):
    """One scenario's row of figures, from its events alone (its "started" sample says its shape)."""
    given = checkers.parameters(events)
    shape, gone = Shape(given["n"], given["r"], given["w"]), given["gone"]
    reads, writes = checkers.ops(events, "read"), checkers.ops(events, "write")
    ok_reads, ok_writes = sum(op["outcome"] == "ok" for op in reads), sum(op["outcome"] == "ok" for op in writes)
    stale = len(checkers.stale_versions(events))
    read_ms, write_ms = checkers.latencies_ms(events, "read"), checkers.latencies_ms(events, "write")
    chance = miss_chance(shape, gone)
    return {
        "n": shape.n, "r": shape.r, "w": shape.w, "gone": gone,
        "overlapping": shape.overlapping, "within_tolerance": gone <= shape.tolerated,
        "reads": ok_reads, "stale_reads": stale, "stale_pct": _pct(stale, ok_reads),
        "miss_chance_pct": None if chance is None else round(100 * chance, 2),
        "failed_reads": len(reads) - ok_reads, "failed_reads_pct": _pct(len(reads) - ok_reads, len(reads)),
        "writes": ok_writes, "failed_writes": len(writes) - ok_writes,
        "failed_writes_pct": _pct(len(writes) - ok_writes, len(writes)),
        "read_p50_ms": _median(read_ms), "write_p50_ms": _median(write_ms),
        "read_p99_ms": _percentile(read_ms, 99), "write_p99_ms": _percentile(write_ms, 99),
        "distances_ms": given["distances_ms"],
    }


def hypothesis(rows_by_scenario):
    """What R + W > N predicts, for each scenario that ran: checks on its figures (harness/verdict.py)."""
    checks = []
    for name, row in rows_by_scenario.items():
        if row["overlapping"] and row["within_tolerance"]:
            checks.append(Check(name, "R + W > N, at most min(N - R, N - W) nodes gone: no read is stale",
                                "stale_reads", 0, 0))
        if row["gone"] > row["n"] - row["r"]:
            checks.append(Check(name, "more than N - R nodes gone: every read fails", "failed_reads_pct", 100, 100))
        if row["gone"] > row["n"] - row["w"]:
            checks.append(Check(name, "more than N - W nodes gone: every write fails", "failed_writes_pct", 100,
                                100))
    return checks


def _pct(part, whole):
    return round(100 * part / whole, 2) if whole else None


def _median(values):
    return round(sorted(values)[len(values) // 2], 3) if values else None


def _percentile(values, percent):
    return round(sorted(values)[min(len(values) - 1, len(values) * percent // 100)], 3) if values else None


def parse_shapes(text):
    """'7/4/4,5/3/3' -> [Shape(7, 4, 4), Shape(5, 3, 3)]."""
    shapes = []
    for item in text.split(","):
        try:
            n, r, w = (int(part) for part in item.strip().split("/"))
        except ValueError:
            raise ValueError(f"a shape is N/R/W, like 7/4/4, not {item.strip()!r}") from None
        if not (1 <= r <= n and 1 <= w <= n and n <= 9):
            raise ValueError(f"{item.strip()}: want 1 <= R, W <= N <= 9")
        shapes.append(Shape(n, r, w))
    return shapes


def parse_distances(text):
    """'0.5,2,10' -> [0.5, 2.0, 10.0]; '' -> [] (every node on loopback)."""
    try:
        distances = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--distances wants milliseconds, comma-separated, e.g. 0.5,2,10,40; not {text!r}") from None
    if not all(0 <= d <= 1000 for d in distances):
        raise ValueError("--distances: milliseconds each way, from 0 to 1000")
    return distances


def run(shapes, *, seconds, fault, read_repair, distances=(), history):
    """Measure every shape into the history, its parameters first (the plan)."""
    history.sample(condition="started", parameters={
        "shapes": [str(s) for s in shapes], "seconds": seconds, "fault": fault, "read_repair": read_repair,
        "writers": 2, "readers": 4, "distances_ms": list(distances)})
    state = Path(tempfile.mkdtemp(prefix="quorum-"))
    try:
        for shape in shapes:
            print(f"{shape}: k = 0 .. {shape.n} nodes {'killed' if fault == 'kill' else 'paused'}", file=sys.stderr)
            measure(shape, seconds=seconds, fault=fault, read_repair=read_repair, state_dir=state,
                    distances=distances, history=history)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: every row of figures, the verdict, quorum.json, the charts and the page.

    Returns (rows, verdict). The run and `python -m loadtest recheck` both
    call it, so a recheck of a finished run reproduces its figures exactly.
    """
    out = Path(out)
    _, events = history.load(out / history.FILE)
    plan = checkers.parameters(events)
    by_scenario = {name: figures(mine) for name, mine in history.scenarios(events).items()}
    rows = list(by_scenario.values())
    judged = verdict.judge(hypothesis(by_scenario), by_scenario)
    (out / "quorum.json").write_text(json.dumps({"plan": plan, "rows": rows, "verdict": judged}, indent=1))
    write(out, run, {"plan": plan, "rows": rows}, verdict=judged, finished=finished)
    return rows, judged


def write(out, run, figures, *, verdict=None, finished=None):
    """The charts as SVG files, and the page (loadtest/reports/page.py), from the figures quorum.json keeps."""
    plan, rows = figures["plan"], figures["rows"]
    shapes = [Shape(*map(int, re.findall(r"\d+", text))) for text in plan["shapes"]]  # as str(Shape) wrote them
    out.mkdir(parents=True, exist_ok=True)
    charts = {str(shape): chart(shape, [r for r in rows if (r["n"], r["r"], r["w"]) == (shape.n, shape.r, shape.w)])
              for shape in shapes}
    charts["stale"] = stale_chart(shapes, rows)
    for name, svg in charts.items():
        (out / f"quorum-{name.replace(' ', '-').replace('=', '')}.svg").write_text(svg)
    page.write(out, run, title="Quorums over independent Redis nodes (a teaching exhibit)",
               headline=headline(rows), verdict=verdict, finished=finished, sections=[
                   ("", page.paragraphs(
                       f"{plan['writers']} writers ({WRITES_PER_SECOND} writes/s each) and {plan['readers']} readers "
                       f"on one key, {plan['seconds']:g} s for each number of nodes gone; nodes "
                       f"{'killed' if plan['fault'] == 'kill' else 'paused'}; read repair "
                       f"{'on' if plan['read_repair'] else 'off'}; "
                       + (f"node i {', '.join(f'{d:g}' for d in plan['distances_ms'])} ms away each way (the i-th, "
                          "cycling). " if plan.get("distances_ms") else "every node on loopback. ")
                       + "A read is stale when it returns a version older than the newest one acknowledged before "
                       f"it began. Every figure is computed from history.jsonl (recheck: python -m loadtest recheck "
                       f"{out}).")),
                   ("", page.charts(charts.values())),
                   ("", table(rows).html()),
               ])


def headline(rows):
    """The most stale reads measured, where the quorums must overlap and where they need not."""
    parts = []
    for overlapping, words in ((True, "R + W > N"), (False, "R + W <= N")):
        stale = [r["stale_pct"] for r in rows if r["overlapping"] == overlapping and r["stale_pct"] is not None]
        if stale:
            parts.append(f"{words}: at most {max(stale):g} % of reads stale")
    return "; ".join(parts) or "no read answered"


def chart(shape, rows):
    gone = [r["gone"] for r in rows]
    return series_chart(
        f"{shape}: {'R + W > N' if shape.overlapping else 'R + W <= N'}", gone,
        {"stale reads %": [r["stale_pct"] for r in rows], "failed reads %": [r["failed_reads_pct"] for r in rows],
         "failed writes %": [r["failed_writes_pct"] for r in rows]},
        x_label="nodes gone", unit="%")


def stale_chart(shapes, rows):
    """Stale reads by nodes gone, one line per shape, and the chance the quorums miss for those that can."""
    most = max(shape.n for shape in shapes)
    gone = list(range(most + 1))
    series = {}
    for shape in shapes:
        mine = {r["gone"]: r for r in rows if (r["n"], r["r"], r["w"]) == (shape.n, shape.r, shape.w)}
        series[f"{shape.n}/{shape.r}/{shape.w} stale"] = [mine[k]["stale_pct"] if k in mine else None for k in gone]
        if not shape.overlapping:
            series[f"{shape.n}/{shape.r}/{shape.w} quorums miss"] = [
                mine[k]["miss_chance_pct"] if k in mine else None for k in gone]
    return series_chart("Stale reads: measured, and the chance the quorums miss", gone, series,
                        x_label="nodes gone", unit="%", width=640, legend_columns=3)


COLUMNS = [("shape", lambda r: f"{r['n']}/{r['r']}/{r['w']}"), ("R+W>N", lambda r: "yes" if r["overlapping"] else "no"),
           ("gone", lambda r: str(r["gone"])), ("reads", lambda r: str(r["reads"])),
           ("stale", lambda r: f"{r['stale_reads']} ({_cell(r['stale_pct'])})"),
           ("quorums miss", lambda r: _cell(r["miss_chance_pct"])),
           ("failed reads", lambda r: _cell(r["failed_reads_pct"])), ("writes", lambda r: str(r["writes"])),
           ("failed writes", lambda r: _cell(r["failed_writes_pct"])),
           ("read p50/p99 ms", lambda r: f"{_cell(r['read_p50_ms'], '')}/{_cell(r.get('read_p99_ms'), '')}"),
           ("write p50/p99 ms", lambda r: f"{_cell(r['write_p50_ms'], '')}/{_cell(r.get('write_p99_ms'), '')}")]


def _cell(value, unit="%"):
    return "n/a" if value is None else f"{value:g}{unit}"


def table(rows):
    """The figures as one Table (reports/tables.py)."""
    return Table(tuple(COLUMNS), tuple(rows))
