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

Every wrk run, where the sessions sit, each kill and every session read go
into history.jsonl as they happen, and shards.json, the tables and the page
are computed from it (shards_report.py), so `python -m loadtest recheck`
gives them again.
"""

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
from loadtest.bench import shards_report
from loadtest.bench.wrk import BENCH_ENV, RELAYS, run_wrk
from loadtest.cli import at_least_one
from loadtest.harness.accounts import prepare
from loadtest.harness.site import COUNTER, Site
from loadtest.reports import tables

NAME = shards_report.NAME
HELP = "session throughput against Redis Cluster shards (1, 2, 3), and what a shard primary's death costs"
INDEXED = True  # its report is listed in results/index.html
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
    parser.add_argument("--rounds", type=at_least_one, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per shard count and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=60, help="users, each with a session, per cluster")
    parser.add_argument("--loss-rounds", type=int, default=3, help="shard primaries killed, one after another")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-shards")


def main(args):
    report = bench_shards(shards=check_shards(args.shards), rounds=args.rounds, seconds=args.seconds,
                          connections=args.connections, instances=args.instances, sessions=args.sessions,
                          loss_rounds=args.loss_rounds, out=args.out, command=args.run.command)
    shards_report.write(args.out, args.run, report)
    print(tables.markdown(shards_report.tables(report)))
    print(f"figures: {args.out / shards_report.FIGURES}; report: {args.out / 'report.html'}")
    return 0


def bench_shards(*, shards, rounds, seconds, connections, instances, sessions, loss_rounds, out,
                 command="python -m loadtest bench-shards"):
    """Throughput in alternating rounds on one cluster per shard count, then the shard losses on the biggest.

    Everything measured goes into out/history.jsonl as it happens, and the
    report (shards.json) is computed from it (shards_report.py).
    """
    require("wrk", "wrk")
    out.mkdir(parents=True, exist_ok=True)
    scripts = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    (scripts / "mix.lua").write_text(SESSION_MIX)
    clusters, users = {}, {}
    recorded = shards_report.started(out, command=command, shards=shards, rounds=rounds, seconds=seconds,
                                     connections=connections, instances=instances, sessions=sessions,
                                     loss_rounds=loss_rounds, cores=os.cpu_count())
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
                shards_report.measured(recorded, shards=count, round_number=round_number, wrk=run,
                                       cpu=cpu.per_second())
        biggest = max(shards)
        slots = {user["name"]: key_slot((SESSION_KEY_PREFIX + user["session"]).encode()) for user in users[biggest]}
        shards_report.placed(recorded, ranges=_ranges(clusters[biggest]), slots=slots)
        for round_number in range(loss_rounds):
            recorded.scenario = f"{shards_report.LOSS} {round_number + 1}"
            _shard_loss(recorded, clusters[biggest], users[biggest], slots, round_number % biggest)
    finally:
        recorded.close()
        for count in clusters:
            deploy.down(out / "clusters" / f"shards{count}")
        for path in scripts.iterdir():
            path.unlink()
        scripts.rmdir()
    return shards_report.written(out)


def _log_in(url, username):
    """A user made beforehand (loadtest/harness/accounts.py), logged in: its cookie header and CSRF token."""
    visitor = Site(url).logged_in(username)
    return {"name": username, "visitor": visitor, "cookie": visitor.cookie_header(), "csrf": visitor.csrf,
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

def _ranges(cluster):
    """{primary's name: (first slot, last slot)} now."""
    return {row["name"]: tuple(int(edge) for edge in row["slots"].split(",")[0].split("-"))
            for row in deploy.status(state_dir=cluster.path)["stores"] if row.get("slots")}


def _shard_loss(recorded, cluster, users, slots, shard_index, interval=0.05, settle=5.0, deadline=60.0):
    """Kill the primary of the shard_index-th slot range while every session is read in a loop, then start it
    again and wait until it rejoined as a replica.

    Every read is an operation of the history and the kill a fault, beside
    where the sessions sit at the kill; what it cost is computed from them
    (shards_report.loss).
    """
    ranges = _ranges(cluster)
    victim = sorted(ranges, key=lambda name: ranges[name])[shard_index]
    shards_report.placed(recorded, ranges=ranges, slots=slots)
    reads = [0] * len(users)  # per session: reads ended so far
    latest = [None] * len(users)  # per session: (seconds since the kill, status) of its latest read ended after it
    stop, killed_at = threading.Event(), []

    def read(index, user):
        while not stop.is_set():
            op = recorded.invoke(user["name"], "read", node="haproxy")
            started = time.monotonic()
            try:
                status = user["visitor"].request("GET", COUNTER).status_code
            except requests.RequestException:
                status = 0  # no answer: the read may have been served
            recorded.complete(op, "ok" if status == 200 else "failed" if status else "unknown",
                              refusal=None if status in (0, 200) else status)
            reads[index] += 1
            if killed_at:
                latest[index] = (started - killed_at[0], status)
            stop.wait(interval)

    threads = [threading.Thread(target=read, args=pair, daemon=True) for pair in enumerate(users)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(reads), timeout=deadline, what="every session's first read before the kill")
        fault = recorded.fault("kill", victim)
        killed_at.append(time.monotonic())
        deploy.kill(victim, state_dir=cluster.path)
        recorded.took_effect(fault)
        wait_for(lambda: _recovered(latest, settle), timeout=deadline, what="every session to answer again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    deploy.start(victim, state_dir=cluster.path)
    wait_for(lambda: _role(cluster, victim) == "replica", timeout=deadline, what=f"{victim} to rejoin as a replica")
    recorded.ended(fault)
    cost = shards_report.loss(recorded.events(recorded.scenario))
    print(f"killed {victim}: {cost['sessions_failed']} of {cost['sessions']} sessions failed "
          f"({cost['sessions_on_it']} on it), the last {cost['last_failure_s']} s after the kill", file=sys.stderr)


def _recovered(latest, settle):
    """True once `settle` seconds have passed since the kill and every session's latest read succeeded."""
    entries = list(latest)
    return (all(entries) and min(entry[0] for entry in entries) > settle
            and all(entry[1] == 200 for entry in entries))


def _role(cluster, name):
    rows = deploy.status(state_dir=cluster.path)["stores"]
    return next(row["role"] for row in rows if row["name"] == name)


def check_shards(text):
    shards = sorted({int(part) for part in text.split(",") if part.strip()})
    if not shards or shards[0] < 1:
        raise DeployError(f"--shards wants shard counts like 1,2,3, not {text!r}")
    return shards
