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
"""

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

from deploy import cluster as deploy
from loadtest.cli import listed
from loadtest.experiments import configs as experiment
from loadtest.experiments import kill_run
from loadtest.experiments.sticky_cpu import haproxy_cpu
from loadtest.harness import locust as driver
from loadtest.reports import page
from loadtest.reports import tables as rendered
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "sticky"
HELP = "sticky sessions' costs against round robin: load skew, fair share after scale-out, HAProxy's CPU per request"
INDEXED = True  # its report is listed in results/index.html
PARTS = ("skew", "fair-share", "haproxy-cpu")
LBS = ("roundrobin", "sticky")
FAIR = 0.9  # of the fair share 1/N
SMOOTH = 5  # seconds in the sliding window of the new instance's share


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

    results = {"command": args.run.command, "machine": page.machine()}
    if "skew" in parts:
        results["skew"] = skew(users=args.users, duration=args.duration, warmup=10, port=args.port, out=args.out,
                               progress=progress)
    if "fair-share" in parts:
        results["fair_share"] = fair_share(users=args.users, stay=stay, warmup=args.warmup, after=args.after,
                                           instances=3, port=args.port, out=args.out, progress=progress)
    if "haproxy-cpu" in parts:
        results["haproxy_cpu"] = haproxy_cpu(rounds=args.rounds, seconds=args.seconds, connections=args.connections,
                                             instances=3, port=args.port, out=args.out, progress=progress)
    write(args.out, args.run, results)
    print(rendered.markdown(tables(results)))
    print(f"figures: {args.out / 'sticky.json'}; report: {args.out / 'report.html'}")
    return 0


def coefficient_of_variation(counts):
    counts = list(counts)
    if len(counts) < 2 or not sum(counts):
        return None
    return round(statistics.pstdev(counts) / statistics.mean(counts), 3)


def served_by(seconds, first, last, names):
    """Requests each instance served among those that started in seconds [first, last)."""
    totals = dict.fromkeys(names, 0)
    for t in range(first, last):
        for name, count in seconds.get(str(t), {}).get("served", {}).items():
            if name in totals:
                totals[name] += count
    return totals


# Skew


def skew(*, users, duration, warmup, port, out, progress):
    """The kill experiment behind each load balancing; the CV of per-instance requests, whole and by thirds."""
    rows = []
    for lb in LBS:
        config = experiment.parse_config(f"redis+{lb}")
        plan = kill_run.Plan([config], users, duration, warmup, "kill", 3, port, out)
        raw = kill_run.run_config(plan, config, 0, lambda index, config, what: progress(f"skew, {lb}: {what}"))
        seconds, start = raw["recording"]["seconds"], raw["window_start"]
        names = ["app1", "app2", "app3"]
        kill, restart = raw["faults"]
        # From the second after the kill to the restart; from the second after app1 was back in HAProxy.
        phases = {"whole": (0, round(duration)), "before the kill": (0, math.floor(kill["at"])),
                  "app1 dead": (math.ceil(kill["at"] + kill["took"]), math.floor(restart["at"])),
                  "after the restart": (math.ceil(restart["at"] + restart["took"]), round(duration))}
        row = {"lb": lb, "users": users}
        for phase, (a, b) in phases.items():
            counts = served_by(seconds, start + a, start + b, names)
            alive = counts if phase != "app1 dead" else {n: c for n, c in counts.items() if n != "app1"}
            row[phase] = {"served": counts, "cv": coefficient_of_variation(alive.values())}
        row["failed"] = sum(s["failures"] for t, s in seconds.items() if start <= int(t) < start + duration)
        rows.append(row)
    return rows


# Fair share after scale-out


def fair_share(*, users, stay, warmup, after, instances, port, out, progress):
    """Scale out by one under a turning-over population; seconds until the new instance has its share."""
    rows = []
    for lb in LBS:
        state_dir = out / "cluster"
        recording = out / "raw" / f"fair-share-{lb}"
        cluster = deploy.up(instances=instances, sessions="redis", presence="redis", lb=lb, port=port,
                            env=experiment.SITE_ENV, state_dir=state_dir)
        try:
            os.environ["LOADTEST_STAY"] = f"{stay[0]:g},{stay[1]:g}"
            try:
                locust = driver.start_locust(users=users, run_time=warmup + after + driver.TAIL,
                                                 ramp=min(10.0, warmup / 2), url=cluster.url, state_dir=state_dir,
                                                 recording=recording)
            finally:
                del os.environ["LOADTEST_STAY"]
            try:
                _sleep_until(time.time() + warmup, locust, lambda left: progress(
                    f"fair share, {lb}: warm-up, {left:.0f} s to the scale-out"))
                asked_at = time.time()
                deploy.scale(instances + 1, state_dir=state_dir)
                scaled_at = time.time()  # the new instance is UP in HAProxy
                _sleep_until(scaled_at + after, locust, lambda left: progress(
                    f"fair share, {lb}: {left:.0f} s left after the scale-out"))
            finally:
                driver.wait_locust(locust, driver.TAIL + driver.STOP_TIMEOUT + 60)
            raw = driver.read_recording(recording, locust.recordings)
        finally:
            deploy.down(state_dir)
        rows.append({"lb": lb, **share_after(raw["seconds"], scaled_at, after, instances + 1),
                     "scale_out_s": round(scaled_at - asked_at, 1), "users": users, "stay": list(stay)})
    return rows


def share_after(seconds, scaled_at, after, count):
    """The new instance's share, second by second after the scale-out, and when it reached FAIR of 1/count."""
    new = f"app{count}"
    first = math.ceil(scaled_at)
    shares = []
    for t in range(first, first + int(after)):
        served = seconds.get(str(t), {}).get("served", {})
        total = sum(served.values())
        shares.append(round(served.get(new, 0) / total, 3) if total else None)
    reached = None
    for i in range(len(shares) - SMOOTH + 1):
        window = [s for s in shares[i:i + SMOOTH] if s is not None]
        if window and statistics.mean(window) >= FAIR / count:
            reached = i + SMOOTH
            break
    last = [s for s in shares[-10:] if s is not None]
    return {"fair_share": round(1 / count, 3), "seconds_to_fair_share": reached, "shares": shares,
            "share_last_10s": round(statistics.mean(last), 3) if last else None}


def _sleep_until(moment, locust, report):
    while (left := moment - time.time()) > 0:
        if locust.poll() is not None:
            raise RuntimeError(f"Locust exited early with code {locust.returncode}")
        report(left)
        time.sleep(min(left, 1.0))


def write(out, run, figures):
    """sticky.json (the figures: each part measured), the new instance's share after the scale-out as
    fair-share.svg, and the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sticky.json").write_text(json.dumps(figures, indent=1))
    svgs = []
    if figures.get("fair_share"):
        svgs.append(fair_share_chart(figures["fair_share"]))
        (out / "fair-share.svg").write_text(svgs[0])
    page.write(out, run, title="Sticky sessions' costs against round robin", headline=headline(figures),
               sections=[("", rendered.html(tables(figures))), ("", page.charts(svgs))])


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
