"""`bench`'s figures from its history alone: bench.json, its tables, its targets and its page.

`bench` (stores.py) records every measurement into history.jsonl as a
sample, after its parameters (the "started" sample): each wrk run ("wrk":
wrk's figures with the generator's CPU and the server's CPU a request, read
from /proc; "store", "mix", "round"), the load balancer's one-connection
runs (mixes "lb_through" and "lb_direct"), and the store commands a request
of each kind sends ("commands", "store"). Everything bench.json, the
terminal and the page show is computed here from those samples, by the run
and by `python -m loadtest recheck`, so a recheck gives the same figures.
bench.json keeps the shape it always had.
"""


from labcore import registry
from loadtest.bench import cost
from loadtest.bench.wrk import DURABLE, RELAYS, median, spread
from loadtest.cli import ratio_text
from loadtest.harness import recorded
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench"
CEILING = "ceiling"  # a bare Django project that answers every request like an empty poll (loadtest/bench/ceiling.py)
LB_MIXES = ("lb_through", "lb_direct")  # the load balancer's one-connection runs, through HAProxy and straight


def started(out, *, command, stores, rounds, seconds, connections, server):
    """The run's history in out, its parameters first (with whether commits were durable and relays ran)."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "stores": stores, "rounds": rounds, "seconds": seconds, "connections": connections, "server": server,
        "durable": DURABLE, "relays": RELAYS})


def figures(given, events):
    """bench.json's report, from the history's parameters and events alone."""
    stores_to_run = given["stores"]
    results = {store: {"poll_direct": [], "poll_lb": [], "login": [],
                       **({cost.FLOOR: []} if cost.has_floor(store) else {})} for store in stores_to_run}
    results[CEILING] = {"poll_direct": []}
    lb, commands = {mix: [] for mix in LB_MIXES}, {}
    for event in events:
        if event["type"] != "sample":
            continue
        if event.get("mix") in LB_MIXES:
            lb[event["mix"]].append(event)
        elif "wrk" in event:
            results[event["store"]][event["mix"]].append(event["wrk"])
        elif "commands" in event:
            commands[event["store"]] = event["commands"]
    report = {"stores": cost.summarise(results, stores_to_run, _summarise(results, stores_to_run)),
              "commands": commands, "load_balancer": _lb_overhead(lb), "server": given["server"],
              "durable": given["durable"], "relays": given["relays"], "rounds": given["rounds"],
              "seconds": given["seconds"], "connections": given["connections"], "raw": results}
    report["targets"] = targets(report) + _target_rows(
        cost.targets(results, stores_to_run, [run["server_us"] for run in results[CEILING]["poll_direct"]]))
    return report


def written(out):
    """The report of the run in `out`, from its history; bench.json written from it."""
    return recorded.written(out, "bench.json", figures(*recorded.load(out)))


def report(out, run, *, finished=None):
    """bench.json and the page from out/history.jsonl alone; returns (report, None): bench states targets, not a
    hypothesis, and its exit status does not depend on them."""
    return recorded.report(out, run, written=written, page=write, finished=finished)


def _lb_overhead(lb):
    """p50 through HAProxy against the same instance hit directly, one connection each: the middle of three."""
    through, straight = ([event["wrk"]["p50_ms"] for event in lb[mix]] for mix in LB_MIXES)
    middle, alone = sorted(through)[1], sorted(straight)[1]
    return {"store": lb["lb_through"][0]["store"], "p50_through_lb_ms": middle, "p50_direct_ms": alone,
            "added": round(middle / alone - 1, 3)}


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
    """The issue's targets, each with the figure that meets it or not; none on a row under a topology."""
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
    for store in stores:  # the targets are on stores alone: a topology row adds none
        if store != CEILING and not cost.parse_row(store).topology_name:
            poll = stores[store]["poll_lb"]
            checks.append((f"{store}: poll mix p99 at most 3 x p50 through HAProxy",
                           3 * poll["p50_ms"] / poll["p99_ms"], 1))
    return _target_rows(checks)


def _target_rows(checks):
    return [{"target": name, "figure": round(figure, 3), "needed": round(needed, 3), "met": figure >= needed}
            for name, figure, needed in checks]


def store_table(report):
    """Each store's requests a second and CPU a request, against the ceiling and the first store."""
    stores = [store for store in report["stores"] if store != CEILING]
    rows = []
    for store in stores:
        mixes = report["stores"][store]
        direct, lb, login = mixes["poll_direct"], mixes["poll_lb"], mixes["login"]
        rows.append([store, f"{direct['rps']:.0f}", ratio_text(direct["to_ceiling"]), f"{direct['server_us']:.0f}",
                     ratio_text(direct["cpu_to_ceiling"]), f"{lb['rps']:.0f}", ratio_text(lb["to_ceiling"]),
                     ratio_text(lb["to_base"]), f"{lb['p50_ms']:.2f}", f"{lb['p99_ms']:.2f}", f"{login['rps']:.0f}",
                     ratio_text(login["to_base"]), f"{lb['generator_cpu']:.0%}"])
    return Table.of(["store", "poll mix direct req/s", "to ceiling", "server CPU µs a request", "ceiling's CPU to it",
                     "through HAProxy req/s", "to ceiling", f"to {stores[0]}", "p50 ms", "p99 ms", "login req/s",
                     f"to {stores[0]}", "wrk CPU"], rows)


def target_table(report):
    return Table.of(["target", "figure", "needed", "met"],
                    [[t["target"], f"{t['figure']:g}", f"{t['needed']:g}", "met" if t["met"] else "NOT met"]
                     for t in report["targets"]])


def lines(report):
    """What the terminal and the page say around the tables: the setting, the ceiling, the load balancer."""
    ceiling, lb = report["stores"][CEILING]["poll_direct"], report["load_balancer"]
    return [f"wrk, {report['connections']} connections, {report['rounds']} rounds of {report['seconds']} s, medians "
            f"(ratios: median and min-max of the rounds); one instance per store, served by {report['server']}",
            f"ceiling (bare Django, same server): {ceiling['rps']:.0f} req/s, {ceiling['server_us']:.0f} µs of "
            "server CPU a request",
            f"load balancer: p50 {lb['p50_through_lb_ms']} ms through HAProxy, {lb['p50_direct_ms']} ms "
            f"direct ({lb['added']:+.0%}), one connection, {lb['store']} sessions"]


def variant_lines(report):
    """One line for each row with settings of its own (`memory:MIDDLEWARE_OFF=all`), round by round: the ceiling's
    CPU a request over its poll mix's (the ratio of the 0.8 target, which is checked on the first row only), its
    store's as it ships beside it, and its CPU a request over its store's as it ships."""
    lines = []
    for row, mixes in report["stores"].items():
        if row == CEILING or not (parsed := cost.parse_row(row)).settings:
            continue
        store = parsed.shipped
        direct = mixes["poll_direct"]
        line = f"{row}: the ceiling's CPU a request to its poll mix's {ratio_text(direct['cpu_to_ceiling'])}"
        if "cpu_to_shipped" in direct:
            shipped = report["stores"][store]["poll_direct"]["cpu_to_ceiling"]
            line += (f" ({store} as it ships: {ratio_text(shipped)}); its CPU a request to {store}'s as it ships "
                     f"{ratio_text(direct['cpu_to_shipped'])}")
        lines.append(line)
    return lines


COST_NOTE = ("server CPU a request straight to the instance (median, min-max of the rounds), beside the floor "
             "and the stock engines; store commands a request, counted by the stores (R Redis, M memcached; "
             "database statements: tests/test_roundtrips.py)")


def write(out, run, report, *, finished=None):
    """The page (reports/page.py): the setting, the tables, the targets; every figure from history.jsonl."""
    met = sum(target["met"] for target in report["targets"])
    setting, ceiling, balancer = lines(report)
    page.write(out, run, title="What each store costs per request", finished=finished,
               headline=f"{met} of {len(report['targets'])} targets met; {ceiling}", sections=[
                   ("", page.paragraphs(setting, "durable: yes" if report["durable"] else "durable: NO (DURABLE=0)",
                                        "Every figure is computed from history.jsonl (recheck: python -m loadtest "
                                        f"recheck {out}).")),
                   ("Stores", store_table(report).html() + page.paragraphs(*variant_lines(report))),
                   ("Cost", page.paragraphs(COST_NOTE) + cost.table(report).html()),
                   ("Load balancer", page.paragraphs(balancer)),
                   ("Targets", target_table(report).html()),
               ])
