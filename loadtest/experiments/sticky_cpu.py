"""Sticky sessions' costs, the third part: HAProxy's CPU per request behind sticky and behind round robin.

Two clusters up at once, one of each, driven in alternating rounds by wrk
with the same requests; HAProxy's CPU time (utime + stime from
/proc/<pid>/stat, in clock ticks) over the requests it passed, less what it
used idle (health checks every 250 ms) over as long just before. Two mixes:
returning clients, whose requests carry a SERVERID cookie, and new clients
without one (sticky then inserts it). Each round is a sample of the run's
history, and the figures (medians, ratios to round robin) are computed from
those samples alone (cpu_rows).
"""

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import BLOCK, DeployError, require
from loadtest.experiments.configs import SITE_ENV

LBS = ("roundrobin", "sticky")
MIXES = ("returning", "new")
TICKS = os.sysconf("SC_CLK_TCK")


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


def haproxy_cpu(*, rounds, seconds, connections, instances, port, out, progress, history):
    """Both clusters up at once; alternating rounds of wrk, each a sample of the history (scenario "haproxy cpu":
    {"haproxy_cpu": {"mix", "lb", "round", and what the round measured}}), which cpu_rows reads."""
    require("wrk", "wrk")
    history.scenario = "haproxy cpu"
    script = Path(tempfile.mkdtemp(prefix="sticky-wrk-")) / "requests.lua"
    script.write_text(WRK_SCRIPT)
    clusters = {}
    try:
        for offset, lb in enumerate(LBS):  # each cluster a whole block of ports: its nodes and their relays
            clusters[lb] = deploy.up(instances=instances, sessions="redis", presence="redis", lb=lb,
                                     port=port + offset * BLOCK, env=SITE_ENV, site_cpus="0",
                                     state_dir=out / f"cluster-{lb}")
        for round_number in range(rounds):
            order = LBS if round_number % 2 == 0 else LBS[::-1]
            for mix in MIXES:
                for lb in order:
                    progress(f"haproxy cpu: round {round_number + 1}/{rounds}, {mix} clients, {lb}")
                    history.sample(haproxy_cpu={"mix": mix, "lb": lb, "round": round_number, **_one_round(
                        clusters[lb], script, mix, seconds, connections, instances)})
    finally:
        for lb in clusters:
            deploy.down(out / f"cluster-{lb}")
        script.unlink(missing_ok=True)
        script.parent.rmdir()


def cpu_rows(events):
    """HAProxy's CPU µs per request, per mix and side: medians of the rounds, and each round's ratio to round
    robin's, from the rounds' samples alone."""
    measured = [e["haproxy_cpu"] for e in events if e["type"] == "sample" and "haproxy_cpu" in e]
    if not measured:
        return []
    rows = []
    for mix in MIXES:
        base = _rounds(measured, mix, "roundrobin")
        for lb in LBS:
            mine = _rounds(measured, mix, lb)
            ratios = [m["us_per_request"] / b["us_per_request"] for m, b in zip(mine, base)]
            rows.append({"mix": mix, "lb": lb, "rounds": mine,
                         "us_per_request": round(statistics.median(m["us_per_request"] for m in mine), 2),
                         "to_roundrobin": round(statistics.median(ratios), 3),
                         "to_roundrobin_range": [round(min(ratios), 3), round(max(ratios), 3)],
                         "rps": round(statistics.median(m["rps"] for m in mine))})
    return rows


def _rounds(measured, mix, lb):
    """What each round of one mix and side measured, in round order (without the sample's own labels)."""
    return [{k: v for k, v in m.items() if k not in ("mix", "lb", "round")}
            for m in sorted(measured, key=lambda m: m["round"]) if (m["mix"], m["lb"]) == (mix, lb)]


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
