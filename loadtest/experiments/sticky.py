"""Sticky sessions' costs, measured against round robin: load skew, fair share after scale-out, HAProxy's CPU.

Each part runs redis sessions (they survive any routing), so the only
difference between the two sides is HAProxy's `cookie SERVERID insert`.

- skew: the kill experiment's run (loadtest/experiments/kill_run.py), app1 killed at
  a third and started again at two thirds; the coefficient of variation
  (population standard deviation over mean) of the requests each instance
  served, over the whole window and in each third.
- fair share: users arrive and leave all the time (each stays a random
  LOADTEST_STAY, then a newcomer without cookies takes its place), and
  after a warm-up the cluster is scaled out by one instance. The time to
  fair share is how long until the new instance served at least FAIR of
  1/N of the requests, over a sliding window of SMOOTH seconds.
- HAProxy's CPU: two clusters up at once, one of each, driven in
  alternating rounds by wrk with the same requests; HAProxy's CPU time
  (utime + stime from /proc/<pid>/stat, in clock ticks) over the requests
  it passed, less what it used idle (health checks every 250 ms) over as
  long just before. Two mixes: returning clients, whose requests carry a
  SERVERID cookie, and new clients without one (sticky then inserts it).

The run is recorded as history.jsonl (sticky_load.py and sticky_cpu.py
say what each part keeps in it), and report() computes sticky.json, the
chart and the page from it alone, so `python -m loadtest recheck`
reproduces them.
"""

import json
import sys
from pathlib import Path

from loadtest.cli import listed
from loadtest.experiments.sticky_cpu import cpu_rows, haproxy_cpu
from loadtest.experiments.sticky_load import FAIR, SMOOTH, fair_share, share_row, skew, skew_row
from loadtest.harness.checkers import parameters
from loadtest.harness.history import FILE, History, scenarios
from loadtest.harness.history import load as load_history
from loadtest.reports import page
from loadtest.reports import tables as rendered
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "sticky"
HELP = "sticky sessions' costs against round robin: load skew, fair share after scale-out, HAProxy's CPU per request"
INDEXED = True  # its report is listed in results/index.html
PARTS = ("skew", "fair-share", "haproxy-cpu")


def add_arguments(parser):
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--duration", type=float, default=60, help="skew: measured seconds (kill at 1/3, start at 2/3)")
    parser.add_argument("--stay", default="10,30", help="fair share: each user's stay, LOW,HIGH seconds")
    parser.add_argument("--warmup", type=float, default=40, help="fair share: seconds of turnover before the scale-out")
    parser.add_argument("--after", type=float, default=50, help="fair share: seconds measured after it")
    parser.add_argument("--rounds", type=int, default=4, help="haproxy-cpu: alternating rounds")
    parser.add_argument("--seconds", type=int, default=5, help="haproxy-cpu: seconds of wrk per round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--out", type=Path, default=Path("results") / "sticky")


def main(args):
    parts = set(listed(args.parts))
    if unknown := parts - set(PARTS):
        raise ValueError(f"--parts: {', '.join(sorted(unknown))} is not one of {', '.join(PARTS)}")
    low, _, high = args.stay.partition(",")
    stay = (float(low), float(high or low))

    def progress(what):
        print(what, file=sys.stderr, flush=True)

    with History(args.out / FILE, experiment=NAME, command=args.run.command) as recorded:
        recorded.sample(condition="started", parameters={"parts": [p for p in PARTS if p in parts],
                                                         "machine": page.machine()})
        if "skew" in parts:
            skew(users=args.users, duration=args.duration, warmup=10, port=args.port, out=args.out,
                 progress=progress, history=recorded)
        if "fair-share" in parts:
            fair_share(users=args.users, stay=stay, warmup=args.warmup, after=args.after, instances=3,
                       port=args.port, out=args.out, progress=progress, history=recorded)
        if "haproxy-cpu" in parts:
            haproxy_cpu(rounds=args.rounds, seconds=args.seconds, connections=args.connections, instances=3,
                        port=args.port, out=args.out, progress=progress, history=recorded)
    results, _ = report(args.out, args.run)
    print(rendered.markdown(tables(results)))
    print(f"figures: {args.out / 'sticky.json'}; report: {args.out / 'report.html'}")
    return 0


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each part's figures, sticky.json, the chart and the page; (results, None).

    The run and `python -m loadtest recheck` both call it. No verdict: what
    each part shows is on the experiment's page beside its figures, and the
    exit status never depended on it.
    """
    out = Path(out)
    header, events = load_history(out / FILE)
    results = {"command": header["command"], "machine": parameters(events)["machine"]}
    by_part = {"skew": [], "fair_share": []}
    for name, mine in scenarios(events).items():
        if name.startswith("skew, "):
            by_part["skew"] += [skew_row(e["skew"]) for e in mine if e["type"] == "sample" and "skew" in e]
        elif name.startswith("fair share, "):
            by_part["fair_share"].append(share_row(mine))
    results.update({part: rows for part, rows in by_part.items() if rows})
    if cpu := cpu_rows(events):
        results["haproxy_cpu"] = cpu
    write(out, run, results, finished=finished)
    return results, None


def write(out, run, figures, *, finished=None):
    """sticky.json (the figures: each part measured), the new instance's share after the scale-out as
    fair-share.svg, and the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sticky.json").write_text(json.dumps(figures, indent=1))
    svgs = []
    if figures.get("fair_share"):
        svgs.append(fair_share_chart(figures["fair_share"]))
        (out / "fair-share.svg").write_text(svgs[0])
    page.write(out, run, title="Sticky sessions' costs against round robin", headline=headline(figures),
               finished=finished,
               sections=[("", page.paragraphs("Every figure is computed from history.jsonl (recheck: python -m "
                                              f"loadtest recheck {out}).")),
                         ("", rendered.html(tables(figures))), ("", page.charts(svgs))])


def headline(results):
    """One figure per part measured: the skew after app1's restart, the time to fair share, HAProxy's CPU."""
    parts = []
    for r in results.get("skew", ()):
        parts.append(f"{r['lb']}: load CV {r['after the restart']['cv']} after app1's restart")
    for r in results.get("fair_share", ()):
        reached = "never" if r["seconds_to_fair_share"] is None else f"{r['seconds_to_fair_share']} s"
        parts.append(f"{r['lb']}: fair share after {reached}")
    for r in results.get("haproxy_cpu", ()):
        if r["lb"] != "roundrobin":
            parts.append(f"{r['mix']} {r['lb']}: HAProxy CPU per request {r['to_roundrobin']} times round robin's")
    return "; ".join(parts) or "no part measured"


def fair_share_chart(rows):
    xs = list(range(len(rows[0]["shares"])))
    series = {f"{r['lb']}: the new instance's share": r["shares"] for r in rows}
    series["fair share"] = [rows[0]["fair_share"]] * len(xs)
    return series_chart("The new instance's share of requests, seconds after it was UP", xs,
                        {name: [None if v is None else round(100 * v, 1) for v in values]
                         for name, values in series.items()},
                        x_label="seconds after the scale-out", unit="%", width=640, legend_columns=3)


def tables(results):
    """The parts measured, one table each (reports/tables.py), for the terminal, the report and the docs."""
    parts = []
    if results.get("skew"):
        parts.append(Table.of(
            ["load balancing", "whole window", "before the kill", "app1 dead (app2, app3)", "after the restart",
             "served app1/app2/app3 after the restart"],
            [[r["lb"], r["whole"]["cv"], r["before the kill"]["cv"], r["app1 dead"]["cv"], r["after the restart"]["cv"],
              "/".join(str(r["after the restart"]["served"][name]) for name in ("app1", "app2", "app3"))]
             for r in results["skew"]],
            caption="Load skew: coefficient of variation of the requests each instance served (0 = even)"))
    if results.get("fair_share"):
        parts.append(Table.of(
            ["load balancing", "users, stay", "fair share", "seconds to it, from UP", "its share, last 10 s",
             "scale-out took s"],
            [[r["lb"], f"{r['users']}, {r['stay'][0]:g}-{r['stay'][1]:g} s", f"{r['fair_share']:.0%}",
              "not within the run" if r["seconds_to_fair_share"] is None else r["seconds_to_fair_share"],
              f"{r['share_last_10s']:.0%}", r["scale_out_s"]] for r in results["fair_share"]],
            caption=f"Fair share after scale-out: seconds until the new instance served {FAIR:.0%} of its fair "
                    f"share (over {SMOOTH} s)"))
    if results.get("haproxy_cpu"):
        parts.append(Table.of(
            ["clients", "load balancing", "µs per request", "to round robin (range)", "req/s"],
            [[r["mix"], r["lb"], r["us_per_request"],
              f"{r['to_roundrobin']} ({r['to_roundrobin_range'][0]}-{r['to_roundrobin_range'][1]})", r["rps"]]
             for r in results["haproxy_cpu"]],
            caption="HAProxy's CPU per request (utime + stime less its idle use, over requests; medians of "
                    "alternating rounds)"))
    return parts
