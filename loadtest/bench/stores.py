"""Benchmarks: what each store costs per request, measured side by side.

`bench`: the site through HAProxy, one cluster per session store (one
instance each, so the store's cost is not hidden behind spare cores), with
Django's stock engines and each store's floor beside them
(loadtest/cost.py), all up
at once and measured in alternating rounds so machine drift cancels; wrk is
the load generator (C, so it leaves the cores to the site) and its CPU is
reported. """

import json
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
from loadtest.bench import cost
from loadtest.bench.wrk import (
    BENCH_ENV,
    DURABLE,
    LOGIN,
    POLL_MIX,
    RELAYS,
    ROOT,
    durability,
    log_in,
    median,
    run_wrk,
    spread,
)
from loadtest.cli import ratio_text
from loadtest.harness.site import OPERATION_TIMEOUT, Site
from loadtest.reports.tables import Table

NAME = "bench"
HELP = "each session store's cost per request, through HAProxy"


def add_arguments(parser):
    parser.add_argument("--stores", default=",".join(cost.BENCH_STORES),
                        help="comma-separated; the first is the base of the ratios")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per store, mix and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--server", default="gthread:8", help="how each instance is served (deploy/web.py)")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench")


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = bench(stores_to_run=args.stores.split(","), rounds=args.rounds, seconds=args.seconds,
                   connections=args.connections, port=args.port, out=args.out, server=args.server)
    base = args.stores.split(",")[0]
    print(f"wrk, {args.connections} connections, {args.rounds} rounds of {args.seconds} s, medians (ratios: "
          f"median and min-max of the rounds); one instance per store, served by {args.server}")
    ceiling = report["stores"]["ceiling"]["poll_direct"]
    print(f"ceiling (bare Django, same server): {ceiling['rps']:.0f} req/s, {ceiling['server_us']:.0f} µs of "
          "server CPU a request")
    rows = []
    for store, mixes in report["stores"].items():
        if store == CEILING:
            continue
        direct, lb, login = mixes["poll_direct"], mixes["poll_lb"], mixes["login"]
        rows.append([store, f"{direct['rps']:.0f}", ratio_text(direct["to_ceiling"]), f"{direct['server_us']:.0f}",
                     ratio_text(direct["cpu_to_ceiling"]), f"{lb['rps']:.0f}", ratio_text(lb["to_ceiling"]),
                     ratio_text(lb["to_base"]), f"{lb['p50_ms']:.2f}", f"{lb['p99_ms']:.2f}", f"{login['rps']:.0f}",
                     ratio_text(login["to_base"]), f"{lb['generator_cpu']:.0%}"])
    print(Table.of(["store", "poll mix direct req/s", "to ceiling", "server CPU µs a request", "ceiling's CPU to it",
                    "through HAProxy req/s", "to ceiling", f"to {base}", "p50 ms", "p99 ms", "login req/s",
                    f"to {base}", "wrk CPU"], rows).markdown())
    print("\nserver CPU a request straight to the instance (median, min-max of the rounds), beside the floor "
          "and the stock engines; store commands a request, counted by the stores (R Redis, M memcached; "
          "database statements: tests/test_roundtrips.py)")
    print(cost.table(report).markdown())
    lb = report["load_balancer"]
    print(f"\nload balancer: p50 {lb['p50_through_lb_ms']} ms through HAProxy, {lb['p50_direct_ms']} ms "
          f"direct ({lb['added']:+.0%}), one connection, {lb['store']} sessions")
    for target in report["targets"]:
        print(f"{'met' if target['met'] else 'NOT met'}: {target['target']} ({target['figure']} against "
              f"{target['needed']})")
    print(durability())
    print(f"figures: {args.out / 'bench.json'}")
    return 0


# Every store whose servers deploy can start; memory first, the base of the ratios.
SESSION_STORES = [name for name, row in registry.SESSION_STORES.items() if set(row.servers) <= set(servers())]


CEILING = "ceiling"  # a bare Django project that answers every request like an empty poll (loadtest/bench/ceiling.py)


def bench(*, stores_to_run, rounds, seconds, connections, port, out, server=web.DEFAULT):
    """Each store's poll mix straight to its instance and through HAProxy, and logins, beside the ceiling.

    Every round measures the ceiling (a bare Django project under the same
    server command) and every store, in an order that alternates, so each
    round gives ratios taken minutes apart at most; the report shows their
    median and spread.
    """
    require("wrk", "wrk")
    for row in stores_to_run:
        cost.parse_row(row)  # a bad row fails before anything starts
    scripts = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    (scripts / "poll.lua").write_text(POLL_MIX)
    (scripts / "login.lua").write_text(LOGIN)
    (scripts / "floor.lua").write_text(cost.FLOOR_MIX)
    clusters, ceiling, commands = {}, None, {}
    results = {store: {"poll_direct": [], "poll_lb": [], "login": [],
                       **({cost.FLOOR: []} if cost.has_floor(store) else {})} for store in stores_to_run}
    results[CEILING] = {"poll_direct": []}
    try:
        ceiling = _start_ceiling(server, scripts)
        for index, row in enumerate(stores_to_run):
            print(f"starting the {row} cluster", file=sys.stderr)
            store, settings = cost.parse_row(row)
            clusters[row] = deploy.up(
                instances=1, sessions=store, presence=registry.session_store(store).presence, server=server,
                port=port + BLOCK * index, env={**BENCH_ENV, **cost.CLUSTER_ENV, **settings},
                durable=DURABLE, relays=RELAYS, state_dir=out / "clusters" / f"c{index}")
        sessions = {store: log_in(c.url) for store, c in clusters.items()}
        sessions[CEILING] = {"BENCH_COOKIE": "", "BENCH_CSRF": "", "BENCH_AFTER": "0"}
        for round_number in range(rounds):
            order = [CEILING, *stores_to_run]
            for name in order if round_number % 2 == 0 else reversed(order):
                print(f"round {round_number + 1}/{rounds}: {name}", file=sys.stderr)
                env, poll = sessions[name], scripts / "poll.lua"
                if name == CEILING:
                    results[name]["poll_direct"].append(
                        run_wrk(ceiling["url"], poll, env, seconds, connections, ceiling["pid"]))
                    continue
                app1 = clusters[name].instances["app1"]
                direct = f"http://127.0.0.1:{app1['port']}"
                results[name]["poll_direct"].append(run_wrk(direct, poll, env, seconds, connections, app1["pid"]))
                if cost.FLOOR in results[name]:
                    results[name][cost.FLOOR].append(
                        run_wrk(direct, scripts / "floor.lua", {}, seconds, connections, app1["pid"]))
                results[name]["poll_lb"].append(run_wrk(clusters[name].url, poll, env, seconds, connections))
                login = scripts / "login.lua"
                results[name]["login"].append(run_wrk(clusters[name].url, login, env, seconds, connections))
        lb = _lb_overhead(clusters[stores_to_run[0]], sessions[stores_to_run[0]], scripts, seconds)
        for store, cluster in clusters.items():
            direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
            commands[store] = cost.commands_per_request(cluster, sessions[store], direct,
                                                               floor=cost.FLOOR in results[store])
    finally:
        for index in range(len(clusters)):
            deploy.down(out / "clusters" / f"c{index}")
        if ceiling:
            stop(ceiling)
        shutil.rmtree(scripts, ignore_errors=True)
    report = {"stores": cost.summarise(results, stores_to_run, _summarise(results, stores_to_run)),
              "commands": commands, "load_balancer": lb, "server": server, "durable": DURABLE, "relays": RELAYS,
              "rounds": rounds,
              "seconds": seconds, "connections": connections, "raw": results}
    report["targets"] = targets(report) + _target_rows(
        cost.targets(results, stores_to_run, [run["server_us"] for run in results[CEILING]["poll_direct"]]))
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    return report


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


def _lb_overhead(cluster, env, scripts, seconds):
    """p50 through HAProxy against the same instance hit directly, one connection each."""
    direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
    through, straight = [], []
    for _ in range(3):
        through.append(run_wrk(cluster.url, scripts / "poll.lua", env, seconds, 1)["p50_ms"])
        straight.append(run_wrk(direct, scripts / "poll.lua", env, seconds, 1)["p50_ms"])
    lb, alone = sorted(through)[1], sorted(straight)[1]
    return {"store": cluster.sessions, "p50_through_lb_ms": lb, "p50_direct_ms": alone,
            "added": round(lb / alone - 1, 3)}


def _summarise(results, stores_to_run):
    """Medians of each figure, and ratios per round (to the ceiling, to the first store) with their spread."""
    base = stores_to_run[0]
    ceiling = [run["rps"] for run in results[CEILING]["poll_direct"]]
    ceiling_us = [run["server_us"] for run in results[CEILING]["poll_direct"]]
    summary = {CEILING: {"poll_direct": {"rps": median(ceiling), "per_round": ceiling,
                                         "server_us": median(ceiling_us)}}}
    for store in stores_to_run:
        mixes = results[store]
        summary[store] = {
            mix: {key: median([run[key] for run in runs])
                  for key in ("rps", "p50_ms", "p99_ms", "generator_cpu", "bad_responses")}
            for mix, runs in mixes.items()
        }
        for mix in ("poll_direct", "poll_lb"):
            rps = [run["rps"] for run in mixes[mix]]
            summary[store][mix]["to_ceiling"] = spread([a / b for a, b in zip(rps, ceiling)])
        direct_us = [run["server_us"] for run in mixes["poll_direct"]]
        summary[store]["poll_direct"]["server_us"] = median(direct_us)
        # Ceiling's CPU per request over the store's, round by round: the ratio of req/s one core could give.
        summary[store]["poll_direct"]["cpu_to_ceiling"] = spread([c / a for a, c in zip(direct_us, ceiling_us)])
        for mix in ("poll_direct", "poll_lb", "login"):
            rps = [run["rps"] for run in mixes[mix]]
            summary[store][mix]["to_base"] = spread([a / b["rps"] for a, b in zip(rps, results[base][mix])])
        summary[store]["lb_to_direct"] = spread(
            [a["rps"] / b["rps"] for a, b in zip(mixes["poll_lb"], mixes["poll_direct"])])
    return summary


def targets(report):
    """The issue's targets, each with the figure that meets it or not."""
    stores, lb = report["stores"], report["load_balancer"]
    base = next(iter(s for s in stores if s != CEILING))
    checks = [(f"{base}'s poll mix, straight to the instance, at least 0.5 of the ceiling",
               stores[base]["poll_direct"]["to_ceiling"]["min"], 0.5),
              (f"{base} through HAProxy within 15 % of straight to the instance",
               stores[base]["lb_to_direct"]["min"], 0.85),
              ("the load balancer adds at most 10 % to p50 (one connection)", 1 / (1 + lb["added"]), 1 / 1.10)]
    for store, row in registry.SESSION_STORES.items():
        if row.bench_target and store in stores:
            checks.append((f"{store} at least {row.bench_target} of {base} in every round (through HAProxy)",
                           stores[store]["poll_lb"]["to_base"]["min"], row.bench_target))
    for store in stores:
        if store != CEILING:
            poll = stores[store]["poll_lb"]
            checks.append((f"{store}: poll mix p99 at most 3 x p50 through HAProxy",
                           3 * poll["p50_ms"] / poll["p99_ms"], 1))
    return _target_rows(checks)


def _target_rows(checks):
    return [{"target": name, "figure": round(figure, 3), "needed": round(needed, 3), "met": figure >= needed}
            for name, figure, needed in checks]
