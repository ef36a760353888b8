"""python -m loadtest bench-replication: what waiting for replicas costs the writes that wait.

For Redis (sessions under Sentinel, each session write followed by `WAIT k`)
and PostgreSQL (sessions and messages in the database, `synchronous_standby_names
= 'ANY k (*)'`), one cluster per number of replicas N and number k of
replicas each write waits for: N in {0, 1, 2, 4}, k in {0, 1, a majority,
all} (N = 0 is the store alone). Every cluster is up at once with one
instance, and each round measures every cluster in turn, in an order that
alternates, so the machine's drift falls on all of them alike. Three
writes, each through HAProxy with wrk (C, so it leaves the cores to the
site): logins (a new session each), session writes (`/api/session-counter`)
and message posts, spread over SESSIONS users and ROOMS rooms so that they
measure replication rather than one row's lock.

What waits for replicas: on Redis, logins and session writes (WAIT); message
posts go to SQLite and show the machine's drift, not replication. On
PostgreSQL, all three commit through the synchronous standbys.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import free_base_port, require
from loadtest.bench import wrk
from loadtest.harness.accounts import PASSWORD
from loadtest.harness.site import Site, messages_path, new_message
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

NAME = "bench-replication"
HELP = ("what waiting for k of N replicas costs logins, session writes and message posts "
        "(Redis WAIT, PostgreSQL ANY k)")
REPLICAS = (0, 1, 2, 4)
SYNC = ("0", "1", "majority", "all")
MIXES = ("login", "session_write", "post")
SESSIONS = 16  # users, each with its own session: writes rarely meet on one row or key
ROOMS = 8

_SCRIPT_HEAD = """
local cookies, csrf = {}, os.getenv("BENCH_CSRF")
for cookie in string.gmatch(os.getenv("BENCH_COOKIES"), "[^|]+") do table.insert(cookies, cookie) end
local i = 0
"""
SCRIPTS = {
    "session_write": _SCRIPT_HEAD + """
request = function()
  i = i + 1
  return wrk.format("POST", "/api/session-counter",
    {Cookie = cookies[i % #cookies + 1], ["X-CSRFToken"] = csrf, ["Content-Type"] = "application/json"},
    '{"counter": ' .. i .. ', "room": "bench"}')
end
""",
    "post": _SCRIPT_HEAD + f"""
local prefix = string.format("%08x", math.random(0, 0x7fffffff))
request = function()
  i = i + 1
  local body = '{{"text": "bench", "client_id": "' .. prefix .. string.format("-0000-4000-8000-%012d", i) .. '"}}'
  return wrk.format("POST", "/api/rooms/bench" .. (i % {ROOMS}) .. "/messages",
    {{Cookie = cookies[i % #cookies + 1], ["X-CSRFToken"] = csrf, ["Content-Type"] = "application/json"}}, body)
end
""",
    "login": _SCRIPT_HEAD + f"""
request = function()
  i = i + 1
  return wrk.format("POST", "/accounts/login/",
    {{Cookie = "csrftoken=" .. csrf, ["Content-Type"] = "application/x-www-form-urlencoded"}},
    "username=bench" .. (i % {SESSIONS}) .. "&password={PASSWORD}&csrfmiddlewaretoken=" .. csrf)
end
""",
}


def add_arguments(parser):
    parser.add_argument("--stores", default="redis,postgres")
    parser.add_argument("--replicas", default=",".join(map(str, REPLICAS)), help="numbers of replicas N")
    parser.add_argument("--sync", default=",".join(SYNC), help="replicas each write waits for: 0, 1, majority, all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="per cluster, write and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-replication")


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = bench(stores=args.stores.split(","), replicas=[int(n) for n in args.replicas.split(",")],
                   sync=args.sync.split(","), rounds=args.rounds, seconds=args.seconds, connections=args.connections,
                   out=args.out)
    print(f"wrk, {args.connections} connections, {args.rounds} rounds of {args.seconds} s per cluster and write, "
          "medians; (to N=0: the median and min-max of each round's ratio); one instance per cluster; "
          f"{wrk.durability()}")
    print(table(report).markdown())
    print(f"chart: {args.out / 'replication.svg'}; figures: {args.out / 'bench-replication.json'}")
    return 0


def sync_count(label, replicas):
    """k for a label of SYNC with N replicas: 0, 1, a majority (N // 2 + 1) or all."""
    if replicas == 0 or label == "0":
        return 0
    return {"1": 1, "majority": replicas // 2 + 1, "all": replicas}[label]


def points(replicas=REPLICAS, sync=SYNC):
    """Every distinct (N, k) of the grid, in order."""
    return list(dict.fromkeys((n, sync_count(label, n)) for n in replicas for label in sync))


def topology(store, replicas, k):
    if store == "redis":
        if not replicas:
            return deploy.Topology()
        return deploy.Topology(redis="sentinel", redis_replicas=replicas, redis_sync=k)
    return deploy.Topology(pg_standbys=replicas, pg_sync=f"ANY {k}" if k else "off")


def bench(*, stores=("redis", "postgres"), replicas=REPLICAS, sync=SYNC, rounds=3, seconds=4, connections=8,
          out):
    """Measure every (N, k) of each store in alternating rounds; return the report (also bench-replication.json)."""
    for name, allowed, what in ((stores, ("redis", "postgres"), "--stores"), (sync, SYNC, "--sync")):
        if unknown := [value for value in name if value not in allowed]:
            raise ValueError(f"{what} {', '.join(unknown)}: each is one of {', '.join(allowed)}")
    if 0 not in replicas or not all(0 <= n <= 6 for n in replicas):
        raise ValueError("--replicas must include 0 (the store alone, the base of the ratios), each 0 to 6")
    require("wrk", "wrk")
    scripts = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    for mix, text in SCRIPTS.items():
        (scripts / f"{mix}.lua").write_text(text)
    grid = points(replicas, sync)
    report = {"rounds": rounds, "seconds": seconds, "connections": connections, "durable": wrk.DURABLE,
              "stores": {}}
    try:
        for store in stores:
            report["stores"][store] = _bench_store(store, grid, scripts, rounds, seconds, connections, out)
    finally:
        shutil.rmtree(scripts, ignore_errors=True)
    (out / "bench-replication.json").write_text(json.dumps(report, indent=1))
    (out / "replication.svg").write_text(chart(report))
    return report


def _bench_store(store, grid, scripts, rounds, seconds, connections, out):
    runs = {point: {mix: [] for mix in MIXES} for point in grid}
    clusters = {}
    try:
        for n, k in grid:
            print(f"{store}: starting N={n}, k={k}", file=sys.stderr)
            clusters[n, k] = deploy.up(
                instances=1, sessions="redis" if store == "redis" else "db", presence="redis",
                db="sqlite" if store == "redis" else "postgres", topology=topology(store, n, k),
                port=free_base_port(), env=wrk.BENCH_ENV, durable=wrk.DURABLE,
                state_dir=out / "clusters" / f"{store}-{n}-{k}")
        env = {point: _log_in(c.url, c.state_dir) for point, c in clusters.items()}
        for round_number in range(rounds):
            for n, k in grid if round_number % 2 == 0 else reversed(grid):
                print(f"{store}: round {round_number + 1}/{rounds}, N={n}, k={k}", file=sys.stderr)
                for mix in MIXES:
                    runs[n, k][mix].append(wrk.run_wrk(clusters[n, k].url, scripts / f"{mix}.lua", env[n, k],
                                                          seconds, connections))
    finally:
        for n, k in clusters:
            deploy.down(out / "clusters" / f"{store}-{n}-{k}")
    return summarise(runs)


def summarise(runs):
    """Per (N, k) and write: median req/s, p50, p99, bad answers, and each round's ratio to N = 0."""
    base = runs[0, 0]
    rows = []
    for (n, k), mixes in runs.items():
        row = {"replicas": n, "k": k}
        for mix, measured in mixes.items():
            rps = [m["rps"] for m in measured]
            ratios = [a / b["rps"] for a, b in zip(rps, base[mix]) if b["rps"]]
            row[mix] = {"rps": wrk.median(rps), "p50_ms": wrk.median([m["p50_ms"] for m in measured]),
                        "p99_ms": wrk.median([m["p99_ms"] for m in measured]),
                        "bad_responses": sum(m["bad_responses"] for m in measured),
                        "to_alone": wrk.spread(ratios), "per_round": rps}
        rows.append(row)
    return rows


def _log_in(url, state_dir):
    """SESSIONS users, made beforehand (deploy.add_users: no sign-up limit to meet) and logged in, each
    posting once in its own room; what wrk needs."""
    deploy.add_users([f"bench{number}" for number in range(SESSIONS)], PASSWORD, state_dir=state_dir)
    visitors = [Site(url).logged_in(f"bench{number}") for number in range(SESSIONS)]
    for number, visitor in enumerate(visitors[:ROOMS]):  # each room made by its own user: the limit is per user
        visitor.api("POST", messages_path(f"bench{number}"), **new_message("first")).raise_for_status()
    # Every user's csrftoken cookie is in its own cookie string; the one in the header must match it.
    csrf = visitors[-1].csrf
    return {"BENCH_COOKIES": "|".join(_with_csrf(v.cookie_header(), csrf) for v in visitors), "BENCH_CSRF": csrf}


def _with_csrf(cookie, csrf):
    parts = [part for part in cookie.split("; ") if not part.startswith("csrftoken=")]
    return "; ".join([*parts, f"csrftoken={csrf}"])


def chart(report):
    """Throughput against N, one line per k, for each store and write: one SVG."""
    panels = []
    for store, rows in report["stores"].items():
        for mix in MIXES:
            replicas = sorted({row["replicas"] for row in rows})
            series = {}
            for label in SYNC:
                values = []
                for n in replicas:
                    k = sync_count(label, n)
                    row = next((r for r in rows if (r["replicas"], r["k"]) == (n, k)), None)
                    values.append(row[mix]["rps"] if row else None)
                series["k=0 (async)" if label == "0" else f"k={label}"] = values
            title = f"{'Redis (WAIT)' if store == 'redis' else 'PostgreSQL (ANY k)'}: {mix.replace('_', ' ')}s"
            panels.append(series_chart(title, replicas, series, x_label="replicas N", unit="/s", width=400,
                                       height=190, legend_columns=2))
    columns, width, height = len(MIXES), 400, 218
    rows_count = -(-len(panels) // columns)
    inner = "".join(f'<g transform="translate({(i % columns) * width} {(i // columns) * height})">{svg}</g>'
                    for i, svg in enumerate(panels))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {columns * width} {rows_count * height}" '
            f'width="{columns * width}" height="{rows_count * height}">{inner}</svg>')


def table(report):
    """The report as one Table (reports/tables.py): one row per store, N and k."""
    header = ["store", "N", "k", *(name for m in MIXES for name in (f"{m.replace('_', ' ')} req/s (to N=0)",
                                                                     "p50/p99 ms"))]
    lines = []
    for store, rows in report["stores"].items():
        for row in rows:
            cells = []
            for mix in MIXES:
                figure = row[mix]
                bad = f", {figure['bad_responses']} bad" if figure["bad_responses"] else ""
                cells += [f"{figure['rps']:.0f} ({figure['to_alone']['median']:.2f}, "
                          f"{figure['to_alone']['min']:.2f}-{figure['to_alone']['max']:.2f}{bad})",
                          f"{figure['p50_ms']:.1f}/{figure['p99_ms']:.1f}"]
            lines.append([store, row["replicas"], row["k"], *cells])
    return Table.of(header, lines)
