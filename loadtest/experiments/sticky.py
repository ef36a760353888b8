"""Sticky sessions' costs, measured against round robin: load skew, fair share after scale-out, HAProxy's CPU.

Each part runs redis sessions (they survive any routing), so the only
difference between the two sides is HAProxy's `cookie SERVERID insert`.

- skew: the kill experiment's run (loadtest/experiments/configs.py), app1 killed at
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
import subprocess
import tempfile
import time
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import DeployError, require
from loadtest.experiments import configs as experiment
from loadtest.reports import page
from loadtest.reports.svg import series_chart

LBS = ("roundrobin", "sticky")
FAIR = 0.9  # of the fair share 1/N
SMOOTH = 5  # seconds in the sliding window of the new instance's share
TICKS = os.sysconf("SC_CLK_TCK")


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
        plan = experiment.Plan([config], users, duration, warmup, "kill", 3, port, out)
        raw = experiment.run_config(plan, config, 0, lambda index, config, what: progress(f"skew, {lb}: {what}"))
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
                locust = experiment.start_locust(users=users, run_time=warmup + after + experiment.TAIL,
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
                experiment.wait_locust(locust, experiment.TAIL + experiment.STOP_TIMEOUT + 60)
            raw = experiment.read_recording(recording, locust.recordings)
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


# HAProxy's CPU per request

WRK_SCRIPT = """
local counter = 0
local servers = tonumber(os.getenv("STICKY_SERVERS"))
local with_cookie = os.getenv("STICKY_COOKIE") == "1"
request = function()
  counter = counter + 1
  if with_cookie then
    return wrk.format("GET", "/healthz", {Cookie = "SERVERID=app" .. (counter % servers + 1)})
  end
  return wrk.format("GET", "/healthz")
end
"""


def haproxy_cpu(*, rounds, seconds, connections, instances, port, out, progress):
    """Both clusters up at once; alternating rounds of wrk; HAProxy's CPU µs per request, per mix and side."""
    require("wrk", "wrk")
    script = Path(tempfile.mkdtemp(prefix="sticky-wrk-")) / "requests.lua"
    script.write_text(WRK_SCRIPT)
    clusters = {}
    try:
        for offset, lb in enumerate(LBS):
            clusters[lb] = deploy.up(instances=instances, sessions="redis", presence="redis", lb=lb,
                                     port=port + offset * 60, env=experiment.SITE_ENV, site_cpus="0",
                                     state_dir=out / f"cluster-{lb}")
        samples = {(mix, lb): [] for mix in ("returning", "new") for lb in LBS}
        for round_number in range(rounds):
            order = LBS if round_number % 2 == 0 else LBS[::-1]
            for mix in ("returning", "new"):
                for lb in order:
                    progress(f"haproxy cpu: round {round_number + 1}/{rounds}, {mix} clients, {lb}")
                    samples[(mix, lb)].append(_one_round(clusters[lb], script, mix, seconds, connections,
                                                         instances))
    finally:
        for lb in clusters:
            deploy.down(out / f"cluster-{lb}")
        script.unlink(missing_ok=True)
        script.parent.rmdir()
    rows = []
    for mix in ("returning", "new"):
        base = samples[(mix, "roundrobin")]
        for lb in LBS:
            mine = samples[(mix, lb)]
            ratios = [m["us_per_request"] / b["us_per_request"] for m, b in zip(mine, base)]
            rows.append({"mix": mix, "lb": lb, "rounds": mine,
                         "us_per_request": round(statistics.median(m["us_per_request"] for m in mine), 2),
                         "to_roundrobin": round(statistics.median(ratios), 3),
                         "to_roundrobin_range": [round(min(ratios), 3), round(max(ratios), 3)],
                         "rps": round(statistics.median(m["rps"] for m in mine))})
    return rows


def _one_round(cluster, script, mix, seconds, connections, instances):
    pid = cluster.haproxy["pid"]
    idle_from = _cpu_ticks(pid)
    time.sleep(seconds)  # no load: HAProxy's own health checks, subtracted below
    idle = _cpu_ticks(pid) - idle_from
    before = _cpu_ticks(pid)
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), cluster.url],
                          capture_output=True, text=True, timeout=seconds + 60,
                          env={**os.environ, "STICKY_SERVERS": str(instances),
                               "STICKY_COOKIE": "1" if mix == "returning" else "0"})
    after = _cpu_ticks(pid)
    if done.returncode:
        raise DeployError(f"wrk failed: {done.stderr.strip()}")
    requests = int(next(line for line in done.stdout.splitlines() if "requests in" in line).split()[0])
    busy = after - before - idle
    return {"requests": requests, "rps": round(requests / seconds), "cpu_ticks": after - before, "idle_ticks": idle,
            "us_per_request": round(busy / TICKS * 1e6 / max(1, requests), 3)}


def _cpu_ticks(pid):
    """utime + stime of a process and all its threads, in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def write(out, run, results):
    """sticky.json, the new instance's share after the scale-out as fair-share.svg, and the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sticky.json").write_text(json.dumps(results, indent=1))
    svgs = []
    if results.get("fair_share"):
        svgs.append(fair_share_chart(results["fair_share"]))
        (out / "fair-share.svg").write_text(svgs[0])
    page.write(out, run, title="Sticky sessions' costs against round robin", headline=headline(results),
               sections=[("", page.markdown(tables(results))), ("", page.charts(svgs))])


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
    """The three parts as Markdown tables, for the terminal, the report and the docs."""
    lines = []
    if results.get("skew"):
        lines += ["Load skew: coefficient of variation of the requests each instance served (0 = even)", "",
                  "| load balancing | whole window | before the kill | app1 dead (app2, app3) | after the restart "
                  "| served app1/app2/app3 after the restart |", "|---|---|---|---|---|---|"]
        for r in results["skew"]:
            after = r["after the restart"]["served"]
            lines.append(f"| {r['lb']} | {r['whole']['cv']} | {r['before the kill']['cv']} | {r['app1 dead']['cv']} "
                         f"| {r['after the restart']['cv']} | {after['app1']}/{after['app2']}/{after['app3']} |")
        lines.append("")
    if results.get("fair_share"):
        lines += ["Fair share after scale-out: seconds until the new instance served "
                  f"{FAIR:.0%} of its fair share (over {SMOOTH} s)", "",
                  "| load balancing | users, stay | fair share | seconds to it, from UP | its share, last 10 s "
                  "| scale-out took s |", "|---|---|---|---|---|---|"]
        for r in results["fair_share"]:
            reached = "not within the run" if r["seconds_to_fair_share"] is None else r["seconds_to_fair_share"]
            lines.append(f"| {r['lb']} | {r['users']}, {r['stay'][0]:g}-{r['stay'][1]:g} s | {r['fair_share']:.0%} "
                         f"| {reached} | {r['share_last_10s']:.0%} | {r['scale_out_s']} |")
        lines.append("")
    if results.get("haproxy_cpu"):
        lines += ["HAProxy's CPU per request (utime + stime less its idle use, over requests; medians of "
                  "alternating rounds)", "",
                  "| clients | load balancing | µs per request | to round robin (range) | req/s |",
                  "|---|---|---|---|---|"]
        for r in results["haproxy_cpu"]:
            low, high = r["to_roundrobin_range"]
            lines.append(f"| {r['mix']} | {r['lb']} | {r['us_per_request']} | {r['to_roundrobin']} ({low}-{high}) "
                         f"| {r['rps']} |")
    return "\n".join(lines)
