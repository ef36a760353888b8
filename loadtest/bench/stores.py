"""Benchmarks: what each store costs per request, measured side by side.

`bench`: the site through HAProxy, one cluster per session store (one
instance each, so the store's cost is not hidden behind spare cores), with
Django's stock engines and each store's floor beside them
(loadtest/bench/cost.py), all up
at once and measured in alternating rounds so machine drift cancels; wrk is
the load generator (C, so it leaves the cores to the site) and its CPU is
reported. A row may start its store under a topology (`redis@sentinel`,
cost.parse_row); every cluster has its own block of ports (`port + BLOCK *
index`), and deploy's layout places every node of any topology inside its
block, so clusters side by side never share a port. """

import shutil
import sys
import tempfile
from pathlib import Path

import requests

from deploy import cluster as deploy
from deploy.cluster import (
    BLOCK,
    DeployError,
    free_port,
    require,
    running,
    servers,
    spawn,
    stop,
    wait_for,
    web,
)
from labcore import registry
from loadtest.bench import cost, stores_report
from loadtest.bench.stores_report import CEILING
from loadtest.bench.wrk import BENCH_ENV, DURABLE, LOGIN, POLL_MIX, RELAYS, ROOT, durability, log_in, run_wrk
from loadtest.cli import at_least_one
from loadtest.harness.site import OPERATION_TIMEOUT, Site

NAME = stores_report.NAME
HELP = "each session store's cost per request, through HAProxy"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--stores", default=",".join(cost.BENCH_STORES),
                        help="comma-separated; the first, a store as it ships, is the base of the ratios; a row may "
                             "carry a topology (redis@sentinel, db@pg-any1: the names of run --configs) and "
                             "settings of its own: redis:STORE_BREAKER_INTERVAL=0, memory:MIDDLEWARE_OFF=all")
    parser.add_argument("--rounds", type=at_least_one, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per store, mix and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--server", default="gthread:8", help="how each instance is served (deploy/web.py)")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench")


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = bench(stores_to_run=args.stores.split(","), rounds=args.rounds, seconds=args.seconds,
                   connections=args.connections, port=args.port, out=args.out, server=args.server,
                   command=args.run.command)
    stores_report.write(args.out, args.run, report)
    setting, ceiling, balancer = stores_report.lines(report)
    print(f"{setting}\n{ceiling}")
    print(stores_report.store_table(report).markdown())
    if variants := stores_report.variant_lines(report):
        print("\n" + "\n".join(variants))
    print(f"\n{stores_report.COST_NOTE}")
    print(cost.table(report).markdown())
    print(f"\n{balancer}")
    for target in report["targets"]:
        print(f"{'met' if target['met'] else 'NOT met'}: {target['target']} ({target['figure']} against "
              f"{target['needed']})")
    print(durability())
    print(f"figures: {args.out / 'bench.json'}; report: {args.out / 'report.html'}")
    return 0


# Every store whose servers deploy can start; memory first, the base of the ratios.
SESSION_STORES = [name for name, row in registry.SESSION_STORES.items() if set(row.servers) <= set(servers())]


def bench(*, stores_to_run, rounds, seconds, connections, port, out, server=web.DEFAULT,
          command="python -m loadtest bench"):
    """Each store's poll mix straight to its instance and through HAProxy, and logins, beside the ceiling.

    Every round measures the ceiling (a bare Django project under the same
    server command) and every store, in an order that alternates, so each
    round gives ratios taken minutes apart at most; the report shows their
    median and spread. Every measurement goes into out/history.jsonl, and
    the report (bench.json) is computed from it (stores_report.py).
    """
    require("wrk", "wrk")
    for row in stores_to_run:
        cost.parse_row(row)  # a malformed row fails before anything starts
    if not cost.alone(stores_to_run[0]):
        raise ValueError(f"--stores: the first row, {stores_to_run[0]!r}, is the base of every ratio and target: "
                         "put a store as it ships, with no settings or topology, first")
    recorded = stores_report.started(out, command=command, stores=stores_to_run, rounds=rounds, seconds=seconds,
                                     connections=connections, server=server)

    def measure(name, mix, round_number, *wrk):
        recorded.sample(store=name, mix=mix, round=round_number, wrk=run_wrk(*wrk))

    clusters, ceiling = {}, None
    scripts = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    try:
        (scripts / "poll.lua").write_text(POLL_MIX)
        (scripts / "login.lua").write_text(LOGIN)
        (scripts / "floor.lua").write_text(cost.FLOOR_MIX)
        ceiling = _start_ceiling(server, scripts)
        for index, row in enumerate(stores_to_run):
            print(f"starting the {row} cluster", file=sys.stderr)
            parsed = cost.parse_row(row)
            clusters[row] = deploy.up(
                instances=1, sessions=parsed.store, presence=registry.session_store(parsed.store).presence,
                server=server, db=parsed.db, topology=parsed.topology, port=port + BLOCK * index,
                env={**BENCH_ENV, **cost.CLUSTER_ENV, **parsed.settings},
                durable=DURABLE, relays=RELAYS, state_dir=out / "clusters" / f"c{index}")
        sessions = {store: log_in(c.url) for store, c in clusters.items()}
        sessions[CEILING] = {"BENCH_COOKIE": "", "BENCH_CSRF": "", "BENCH_AFTER": "0"}
        for round_number in range(rounds):
            order = [CEILING, *stores_to_run]
            for name in order if round_number % 2 == 0 else reversed(order):
                print(f"round {round_number + 1}/{rounds}: {name}", file=sys.stderr)
                env, poll = sessions[name], scripts / "poll.lua"
                if name == CEILING:
                    measure(name, "poll_direct", round_number,
                            ceiling["url"], poll, env, seconds, connections, ceiling["pid"])
                    continue
                app1 = clusters[name].instances["app1"]
                direct = f"http://127.0.0.1:{app1['port']}"
                measure(name, "poll_direct", round_number, direct, poll, env, seconds, connections, app1["pid"])
                if cost.has_floor(name):
                    measure(name, cost.FLOOR, round_number,
                            direct, scripts / "floor.lua", {}, seconds, connections, app1["pid"])
                measure(name, "poll_lb", round_number, clusters[name].url, poll, env, seconds, connections)
                login = scripts / "login.lua"
                measure(name, "login", round_number, clusters[name].url, login, env, seconds, connections)
        _lb_overhead(clusters[stores_to_run[0]], sessions[stores_to_run[0]], scripts, seconds, measure)
        for store, cluster in clusters.items():
            if not cost.counts_commands(store):
                continue
            direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
            recorded.sample(store=store, commands=cost.commands_per_request(cluster, sessions[store], direct,
                                                                            floor=cost.has_floor(store)))
    finally:
        recorded.close()
        for index in range(len(clusters)):
            deploy.down(out / "clusters" / f"c{index}")
        if ceiling:
            stop(ceiling)
        shutil.rmtree(scripts, ignore_errors=True)
    return stores_report.written(out)


def _start_ceiling(server, folder):
    port = free_port()
    record = spawn(web.argv(server, port=port, app="loadtest.bench.ceiling"), log_path=folder / "ceiling.log", cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url) or not running(record), timeout=30, what="the ceiling project")
    if not running(record):
        raise DeployError(f"the ceiling project exited at start: {(folder / 'ceiling.log').read_text()[-500:]}")
    return {"url": url, **record}


def _answers(url):
    try:
        return Site(url, timeout=OPERATION_TIMEOUT).request("GET", "/healthz").status_code == 200
    except requests.RequestException:
        return False


def _lb_overhead(cluster, env, scripts, seconds, measure):
    """The poll mix through HAProxy and straight to the same instance, one connection each, three times."""
    direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
    for round_number in range(3):
        measure(cluster.sessions, "lb_through", round_number, cluster.url, scripts / "poll.lua", env, seconds, 1)
        measure(cluster.sessions, "lb_direct", round_number, direct, scripts / "poll.lua", env, seconds, 1)
