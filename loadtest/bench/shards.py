"""bench-shards: session throughput against the number of Redis Cluster shards, and what a shard's death costs.

Throughput: one cluster per shard count (`--redis cluster --redis-shards
N`), all up at once, each given the same many sessions' worth of reads and
writes (`/api/session-counter`) by wrk through HAProxy, in rounds whose
order alternates so machine drift cancels. Beside each run, the CPU each
part of the cluster used (the instances, the Redis nodes, HAProxy, wrk), so
the curve can be read against what the cores were doing.

Shard loss: on the cluster with the most shards, every session read
back in a loop by a thread of its own while one shard's primary is killed:
the share of sessions that met a failure, what the failures were, and how
long from the kill until the last of them (the replica's promotion, plus the
site's breaker interval at most). Then the old primary is started again (it
rejoins as a replica) and the next round kills the primary of the next shard.
"""

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from redis.cluster import key_slot

from deploy import cluster as deploy
from deploy.cluster import DeployError, Topology, free_base_port, require, wait_for
from loadtest.bench.wrk import BENCH_ENV, RELAYS, run_wrk
from loadtest.harness.accounts import prepare
from loadtest.harness.site import COUNTER, Site
from loadtest.reports.tables import Table

NAME = "bench-shards"
HELP = "session throughput against Redis Cluster shards (1, 2, 3), and what a shard primary's death costs"
SESSION_KEY_PREFIX = ":1:django.contrib.sessions.cache"  # Django's cache key of a session: it picks the slot
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SESSION_MIX = """
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do
  local cookie, csrf = line:match("([^\\t]+)\\t([^\\t]+)")
  sessions[#sessions + 1] = {cookie, csrf}
end
local i = 0
request = function()
  i = i + 1
  local s = sessions[math.floor(i / 2) % #sessions + 1]
  if i % 2 == 0 then
    return wrk.format("POST", "/api/session-counter",
                      {Cookie = s[1], ["X-CSRFToken"] = s[2], ["Content-Type"] = "application/json"},
                      '{"counter": ' .. i .. '}')
  end
  return wrk.format("GET", "/api/session-counter", {Cookie = s[1]})
end
"""


def add_arguments(parser):
    parser.add_argument("--shards", default="1,2,3", help="comma-separated shard counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per shard count and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=60, help="users, each with a session, per cluster")
    parser.add_argument("--loss-rounds", type=int, default=3, help="shard primaries killed, one after another")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-shards")


def main(args):
    print_report(bench_shards(shards=check_shards(args.shards), rounds=args.rounds, seconds=args.seconds,
                              connections=args.connections, instances=args.instances, sessions=args.sessions,
                              loss_rounds=args.loss_rounds, out=args.out))
    return 0


def bench_shards(*, shards, rounds, seconds, connections, instances, sessions, loss_rounds, out):
    require("wrk", "wrk")
    out.mkdir(parents=True, exist_ok=True)
    scripts = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    (scripts / "mix.lua").write_text(SESSION_MIX)
    clusters, users = {}, {}
    results = {count: [] for count in shards}
    try:
        for count in shards:
            print(f"starting the cluster with {count} shards", file=sys.stderr)
            clusters[count] = deploy.up(
                instances=instances, sessions="redis", presence="redis", port=free_base_port(), env=BENCH_ENV,
                topology=Topology(redis="cluster", redis_shards=count), relays=RELAYS,
                state_dir=out / "clusters" / f"shards{count}")
            names = prepare(sessions, state_dir=clusters[count].state_dir)
            users[count] = [_log_in(clusters[count].url, name) for name in names]
            (scripts / f"sessions{count}.tsv").write_text(
                "".join(f"{user['cookie']}\t{user['csrf']}\n" for user in users[count]))
        for round_number in range(rounds):
            for count in shards if round_number % 2 == 0 else reversed(shards):
                print(f"round {round_number + 1}/{rounds}: {count} shards", file=sys.stderr)
                env = {"BENCH_SESSIONS": str(scripts / f"sessions{count}.tsv")}
                cpu = _CpuMeter(clusters[count])
                run = run_wrk(clusters[count].url, scripts / "mix.lua", env, seconds, connections)
                results[count].append({**run, "cpu": cpu.per_second()})
        biggest = max(shards)
        spread = _sessions_per_shard(clusters[biggest], users[biggest])
        losses = [_shard_loss(clusters[biggest], users[biggest], round_number % biggest)
                  for round_number in range(loss_rounds)]
    finally:
        for count in clusters:
            deploy.down(out / "clusters" / f"shards{count}")
        for path in scripts.iterdir():
            path.unlink()
        scripts.rmdir()
    report = {"shards": shards, "rounds": rounds, "seconds": seconds, "connections": connections,
              "instances": instances, "sessions": sessions, "cores": os.cpu_count(),
              "throughput": _summarise(results), "sessions_per_shard": spread, "loss": losses, "raw": results}
    (out / "shards.json").write_text(json.dumps(report, indent=1))
    return report


def _log_in(url, username):
    """A user made beforehand (loadtest/harness/accounts.py), logged in: its cookie header and CSRF token."""
    visitor = Site(url).logged_in(username)
    return {"visitor": visitor, "cookie": visitor.cookie_header(), "csrf": visitor.csrf,
            "session": visitor.http.cookies["sessionid"]}


class _CpuMeter:
    """CPU seconds per second of each part of a cluster, from /proc, between its making and per_second()."""

    def __init__(self, cluster):
        self.parts = {"instances": [r["pid"] for r in cluster.instances.values()],
                      "redis": [r["pid"] for r in cluster.stores.values()],
                      "haproxy": [cluster.haproxy["pid"]]}
        self.started = time.monotonic()
        self.before = {part: _cpu_seconds(pids) for part, pids in self.parts.items()}

    def per_second(self):
        elapsed = time.monotonic() - self.started
        return {part: round((_cpu_seconds(pids) - self.before[part]) / elapsed, 3)
                for part, pids in self.parts.items()}


def _cpu_seconds(pids):
    """utime + stime of these processes and their threads (a gunicorn's worker is its child: counted too)."""
    total = 0
    for pid in pids:
        for process in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _children(pid):
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _summarise(results):
    summary = {}
    for count, runs in results.items():
        rates = sorted(run["rps"] for run in runs)
        summary[count] = {"rps_median": rates[len(rates) // 2], "rps_min": rates[0], "rps_max": rates[-1],
                          "p99_ms_median": sorted(run["p99_ms"] for run in runs)[len(runs) // 2],
                          "bad_responses": sum(run["bad_responses"] for run in runs),
                          "cpu_median": {part: sorted(run["cpu"][part] for run in runs)[len(runs) // 2]
                                         for part in runs[0]["cpu"]},
                          "generator_cpu_median": sorted(run["generator_cpu"] for run in runs)[len(runs) // 2]}
    base = summary[min(results)]["rps_median"]
    for count in summary:
        summary[count]["ratio_to_fewest"] = round(summary[count]["rps_median"] / base, 3)
    return summary


def _ranges(cluster):
    """{primary's name: (first slot, last slot)} now."""
    return {row["name"]: tuple(int(edge) for edge in row["slots"].split(",")[0].split("-"))
            for row in deploy.status(state_dir=cluster.path)["stores"] if row.get("slots")}


def _shard(user, ranges):
    slot = key_slot((SESSION_KEY_PREFIX + user["session"]).encode())
    return next(name for name, (first, last) in ranges.items() if first <= slot <= last)


def _sessions_per_shard(cluster, users):
    ranges = _ranges(cluster)
    return {name: sum(_shard(user, ranges) == name for user in users) for name in ranges}


def _shard_loss(cluster, users, shard_index, interval=0.05, settle=5.0, deadline=60.0):
    """Kill the primary of the shard_index-th slot range while every session is read in a loop; what it cost."""
    ranges = _ranges(cluster)
    victim = sorted(ranges, key=lambda name: ranges[name])[shard_index]
    on_victim = sum(_shard(user, ranges) == victim for user in users)
    records = [[] for _ in users]  # per session: (seconds since the kill, status, seconds it took)
    stop, killed_at = threading.Event(), []

    def read(user, record):
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = user["visitor"].request("GET", COUNTER).status_code
            except requests.RequestException:
                status = 0
            if killed_at:
                record.append((started - killed_at[0], status, time.monotonic() - started))
            stop.wait(interval)

    threads = [threading.Thread(target=read, args=pair, daemon=True) for pair in zip(users, records)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)  # every reader under way before the kill
        killed_at.append(time.monotonic())
        deploy.kill(victim, state_dir=cluster.path)
        wait_for(lambda: _recovered(records, settle), timeout=deadline, what="every session to answer again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    failed = [[entry for entry in record if entry[1] != 200] for record in records]
    hit = [entries for entries in failed if entries]
    statuses = sorted({status for entries in hit for _, status, _ in entries})
    result = {
        "killed": victim, "sessions": len(users), "sessions_on_it": on_victim, "sessions_failed": len(hit),
        "share_failed": round(len(hit) / len(users), 3),
        "statuses": statuses,
        "last_failure_s": round(max((entries[-1][0] for entries in hit), default=0), 2),
        "first_failure_s": round(min((entries[0][0] for entries in hit), default=0), 2),
        "slowest_failure_ms": round(1000 * max((took for entries in hit for _, _, took in entries), default=0), 1),
        "requests": sum(len(record) for record in records),
    }
    deploy.start(victim, state_dir=cluster.path)
    wait_for(lambda: _role(cluster, victim) == "replica", timeout=deadline, what=f"{victim} to rejoin as a replica")
    print(f"killed {victim}: {result['sessions_failed']} of {len(users)} sessions failed "
          f"({on_victim} on it), the last {result['last_failure_s']} s after the kill", file=sys.stderr)
    return result


def _recovered(records, settle):
    """True once `settle` seconds have passed since the kill and every session's latest read succeeded."""
    latest = [record[-1] for record in records if record]
    return (len(latest) == len(records) and min(entry[0] for entry in latest) > settle
            and all(entry[1] == 200 for entry in latest))


def _role(cluster, name):
    rows = deploy.status(state_dir=cluster.path)["stores"]
    return next(row["role"] for row in rows if row["name"] == name)


def print_report(report):
    print(f"session throughput through HAProxy ({report['instances']} instances, {report['connections']} "
          f"connections, {report['sessions']} sessions, {report['rounds']} alternating rounds of "
          f"{report['seconds']} s; {report['cores']} cores)")
    throughput = [[count, f"{row['rps_median']:,.0f}", f"{row['rps_min']:,.0f} to {row['rps_max']:,.0f}",
                   f"{row['ratio_to_fewest']:.2f}", f"{row['p99_ms_median']:.1f}",
                   *(f"{row['cpu_median'][part]:.2f}" for part in ("instances", "redis", "haproxy")),
                   f"{row['generator_cpu_median']:.2f}"] for count, row in report["throughput"].items()]
    print(Table.of(["shards", "req/s (median)", "min to max", "ratio", "p99 ms", "CPU: instances", "Redis", "HAProxy",
                    "wrk"], throughput).markdown())
    print(f"sessions per shard: {report['sessions_per_shard']}")
    losses = [[loss["killed"], loss["sessions_on_it"], f"{loss['sessions_failed']} of {loss['sessions']}",
               f"{loss['share_failed']:.0%}", ", ".join(map(str, loss["statuses"])),
               f"{loss['first_failure_s']} to {loss['last_failure_s']}", f"{loss['slowest_failure_ms']} ms"]
              for loss in report["loss"]]
    print(Table.of(["killed", "sessions on it", "sessions that failed", "share", "statuses",
                    "failures from .. to (s after the kill)", "slowest failure"], losses).markdown())


def check_shards(text):
    shards = sorted({int(part) for part in text.split(",") if part.strip()})
    if not shards or shards[0] < 1:
        raise DeployError(f"--shards wants shard counts like 1,2,3, not {text!r}")
    return shards
