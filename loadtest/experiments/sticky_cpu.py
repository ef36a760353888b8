"""Sticky sessions' costs, the third part: HAProxy's CPU per request behind sticky and behind round robin.

Two clusters up at once, one of each, driven in alternating rounds by wrk
with the same requests; HAProxy's CPU time (utime + stime from
/proc/<pid>/stat, in clock ticks) over the requests it passed, less what it
used idle (health checks every 250 ms) over as long just before. Two mixes:
returning clients, whose requests carry a SERVERID cookie, and new clients
without one (sticky then inserts it).
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


def haproxy_cpu(*, rounds, seconds, connections, instances, port, out, progress):
    """Both clusters up at once; alternating rounds of wrk; HAProxy's CPU µs per request, per mix and side."""
    require("wrk", "wrk")
    script = Path(tempfile.mkdtemp(prefix="sticky-wrk-")) / "requests.lua"
    script.write_text(WRK_SCRIPT)
    clusters = {}
    try:
        for offset, lb in enumerate(LBS):  # each cluster a whole block of ports: its nodes and their relays
            clusters[lb] = deploy.up(instances=instances, sessions="redis", presence="redis", lb=lb,
                                     port=port + offset * BLOCK, env=SITE_ENV, site_cpus="0",
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
