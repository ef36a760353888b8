"""`bench-shards`' figures from its history alone: shards.json, its tables and its page.

`bench-shards` (shards.py) records into history.jsonl, after its
parameters (the "started" sample: "shards", "rounds", "seconds",
"connections", "instances", "sessions", "loss_rounds", and "cores", the
machine's): each wrk run as a sample ("shards": the shard count, "round",
"wrk": wrk's figures, "cpu": the CPU seconds a second each part of the
cluster used meanwhile); where the sessions sit before the losses (a
sample with "ranges", each primary's slot range, and "slots", each user's
session's slot); then each shard loss as a scenario of its own ("shard loss
1", ...): the slot ranges and the sessions' slots at the kill, the kill of
the shard's primary as a fault, and every session read of every user as an
operation ("read", served through "haproxy"; "ok" on a 200, "failed" with
the status as its refusal, "unknown" when no answer came). shards.json, the
tables and the page are computed here from those events alone, by the run
and by `python -m loadtest recheck`, so a recheck gives the same figures.
shards.json keeps the shape it always had.
"""

from loadtest.harness import checkers, recorded
from loadtest.harness.history import scenarios
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-shards"
FIGURES = "shards.json"
LOSS = "shard loss"  # each loss round's scenario: "shard loss 1", "shard loss 2", ...


def started(out, *, command, shards, rounds, seconds, connections, instances, sessions, loss_rounds, cores):
    """The run's history in out, its parameters first; on a clock to the microsecond (a read lasts a few
    milliseconds, and whether one ended before the kill must be told by the clock, not by rounding)."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "shards": shards, "rounds": rounds, "seconds": seconds, "connections": connections, "instances": instances,
        "sessions": sessions, "loss_rounds": loss_rounds, "cores": cores}, digits=6)


def measured(history, *, shards, round_number, wrk, cpu):
    """One wrk run on the cluster with `shards` shards, and each part's CPU meanwhile, as its sample."""
    history.sample(shards=shards, round=round_number, wrk=wrk, cpu=cpu)


def placed(history, *, ranges, slots):
    """Where the sessions sit now: {primary: [first, last slot]} and {user: their session's slot}."""
    history.sample(ranges={name: list(edges) for name, edges in ranges.items()}, slots=slots)


def shard_of(slot, ranges):
    """The primary whose slot range holds `slot`."""
    return next(name for name, (first, last) in ranges.items() if first <= slot <= last)


def figures(given, events):
    """shards.json's report, from the history's events alone."""
    results = {count: [] for count in given["shards"]}
    for event in recorded.samples(events, "wrk"):
        results[event["shards"]].append({**event["wrk"], "cpu": event["cpu"]})
    if missing := [str(count) for count, runs in results.items() if not runs]:
        raise ValueError(f"the history records no wrk run with {', '.join(missing)} shards: the run stopped before")
    before = [event for event in recorded.samples(events, "slots") if not event.get("scenario")]
    if not before:
        raise ValueError("the history does not say where the sessions sit: the run stopped before the shard losses")
    spread = {name: sum(shard_of(slot, before[-1]["ranges"]) == name for slot in before[-1]["slots"].values())
              for name in before[-1]["ranges"]}
    losses = [loss(mine) for name, mine in scenarios(events).items() if name.startswith(LOSS)]
    return {"shards": given["shards"], "rounds": given["rounds"], "seconds": given["seconds"],
            "connections": given["connections"], "instances": given["instances"], "sessions": given["sessions"],
            "cores": given["cores"], "throughput": _summarise(results), "sessions_per_shard": spread, "loss": losses,
            "raw": results}


def loss(events):
    """One shard loss from its scenario's events: the sessions that met a failure, which, and when."""
    kill = next((event for event in events if event["type"] == "fault" and event["action"] == "kill"), None)
    if kill is None:
        raise ValueError("the history holds a shard loss without its kill: the run stopped before it")
    at = next(event for event in events if event["type"] == "sample" and "slots" in event)  # recorded before it
    reads = [op for op in checkers.ops(events, ("read",)) if op["completed"] is not None
             and op["completed"] >= kill["sent"]]
    failures = [op for op in reads if op["outcome"] != "ok"]
    offsets = [op["invoked"] - kill["sent"] for op in failures]
    return {
        "killed": kill["target"], "sessions": len(at["slots"]),
        "sessions_on_it": sum(shard_of(slot, at["ranges"]) == kill["target"] for slot in at["slots"].values()),
        "sessions_failed": len({op["who"] for op in failures}),
        "share_failed": round(len({op["who"] for op in failures}) / len(at["slots"]), 3),
        "statuses": sorted({op["refusal"] if op["outcome"] == "failed" else 0 for op in failures}),
        "last_failure_s": round(max(offsets, default=0), 2),
        "first_failure_s": round(min(offsets, default=0), 2),
        "slowest_failure_ms": round(1000 * max((op["completed"] - op["invoked"] for op in failures), default=0), 1),
        "requests": len(reads),
    }


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


def written(out):
    """The report of the run in out, from its history; shards.json written from it."""
    return recorded.written(out, FIGURES, figures(*recorded.load(out)))


def report(out, run, *, finished=None):
    """shards.json and the page from out/history.jsonl alone; (report, None): no hypothesis."""
    return recorded.report(out, run, written=written, page=write, finished=finished)


def tables(report):
    """The throughput table, where the sessions sit, and the losses table: for the terminal and the page."""
    throughput = [[count, f"{row['rps_median']:,.0f}", f"{row['rps_min']:,.0f} to {row['rps_max']:,.0f}",
                   f"{row['ratio_to_fewest']:.2f}", f"{row['p99_ms_median']:.1f}",
                   *(f"{row['cpu_median'][part]:.2f}" for part in ("instances", "redis", "haproxy")),
                   f"{row['generator_cpu_median']:.2f}"] for count, row in report["throughput"].items()]
    losses = [[loss["killed"], loss["sessions_on_it"], f"{loss['sessions_failed']} of {loss['sessions']}",
               f"{loss['share_failed']:.0%}", ", ".join(map(str, loss["statuses"])),
               f"{loss['first_failure_s']} to {loss['last_failure_s']}", f"{loss['slowest_failure_ms']} ms"]
              for loss in report["loss"]]
    return [Table.of(["shards", "req/s (median)", "min to max", "ratio", "p99 ms", "CPU: instances", "Redis",
                      "HAProxy", "wrk"], throughput,
                     caption=f"session throughput through HAProxy ({report['instances']} instances, "
                             f"{report['connections']} connections, {report['sessions']} sessions, {report['rounds']} "
                             f"alternating rounds of {report['seconds']} s; {report['cores']} cores)"),
            f"sessions per shard: {report['sessions_per_shard']}",
            Table.of(["killed", "sessions on it", "sessions that failed", "share", "statuses",
                      "failures from .. to (s after the kill)", "slowest failure"], losses,
                     caption="a shard's primary killed while every session is read in a loop")]


def headline(report):
    most, fewest = max(report["throughput"]), min(report["throughput"])
    parts = [f"{most} shards: {report['throughput'][most]['ratio_to_fewest']:.2f} x the req/s of {fewest}"]
    parts += [f"{loss['killed']} killed: {loss['sessions_failed']} of {loss['sessions']} sessions met a failure"
              for loss in report["loss"]]
    return "; ".join(parts)


def write(out, run, report, *, finished=None):
    """The page (reports/page.py): the tables; every figure from history.jsonl."""
    parts = tables(report)
    page.write(out, run, title="What the shards buy, and what losing one costs", finished=finished,
               headline=headline(report),
               sections=[("", page.paragraphs("Every figure is computed from history.jsonl (recheck: python -m "
                                              f"loadtest recheck {out}).")),
                         ("Throughput", parts[0].html()), ("Shard loss", page.paragraphs(parts[1]) + parts[2].html())])
