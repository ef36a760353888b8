"""`bench-replication`'s figures from its history alone: bench-replication.json, its table and its page.

`bench-replication` (replication.py) records into history.jsonl, after its
parameters (the "started" sample: "stores", "replicas", "sync",
"distances", "rounds", "seconds", "connections"), one sample per store,
(N, k) and round: "store", "replicas" (N), "k", "round", "latencies_ms"
(every write's latency, to the microsecond, the connections' in turn),
"short" (writes fewer than k replicas confirmed) and "relay_cpu_s" (the
CPU seconds the cluster's latency relays used meanwhile). The medians, the
p99s, the writes a second and the predictions are computed here from those
samples alone, by the run and by `python -m loadtest recheck`, so a recheck
gives the same bench-replication.json, which keeps the shape it always had.
"""

import statistics

from loadtest.harness import recorded
from loadtest.harness.analysis import percentile
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-replication"
FIGURES = "bench-replication.json"
REPLICAS = (1, 2, 4)
SYNC = ("0", "1", "majority", "all")
DISTANCES = (0.5, 2, 10, 40)
STORES = ("redis", "postgres")


def started(out, *, command, stores, replicas, sync, distances, rounds, seconds, connections):
    """The run's history in out, its parameters first."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "stores": list(stores), "replicas": list(replicas), "sync": list(sync), "distances": list(distances),
        "rounds": rounds, "seconds": seconds, "connections": connections})


def measured(history, *, store, replicas, k, round_number, latencies_ms, short, relay_cpu_s):
    """One round of one (N, k): every write's latency, the writes short of k, the relays' CPU, as its sample."""
    history.sample(store=store, replicas=replicas, k=k, round=round_number,
                   latencies_ms=[round(ms, 3) for ms in latencies_ms], short=short, relay_cpu_s=relay_cpu_s)


def sync_count(label, replicas):
    """k for a label of SYNC with N replicas: 0, 1, a majority (N // 2 + 1) or all."""
    return {"0": 0, "1": 1, "majority": replicas // 2 + 1, "all": replicas}[label]


def points(replicas=REPLICAS, sync=SYNC):
    """Every distinct (N, k) of the grid, in order."""
    return list(dict.fromkeys((n, sync_count(label, n)) for n in replicas for label in sync))


def distances_of(replicas, distances):
    """{replica number (1..N): its distance in ms}: the i-th distance, cycling."""
    return {i: distances[(i - 1) % len(distances)] for i in range(1, replicas + 1)}


def predicted_ms(alone_ms, replicas, k, distances):
    """The write's own cost plus the round trip to the k-th nearest replica (none at k = 0)."""
    if k == 0:
        return alone_ms
    return alone_ms + 2 * sorted(distances_of(replicas, distances).values())[k - 1]


def figures(given, events):
    """bench-replication.json's report, from the history's events alone."""
    grid = points(given["replicas"], given["sync"])
    report = {"rounds": given["rounds"], "seconds": given["seconds"], "connections": given["connections"],
              "distances_ms": given["distances"], "stores": {}}
    for store in given["stores"]:
        samples = {point: [] for point in grid}
        for event in recorded.samples(events, "latencies_ms"):
            if event["store"] == store:
                samples[event["replicas"], event["k"]].append(event)
        if missing := [f"N={n} k={k}" for (n, k), rounds in samples.items() if not rounds]:
            raise ValueError(f"the history records no writes of {store} at {', '.join(missing)}: the run stopped "
                             "before them")
        report["stores"][store] = summarise(samples, given["distances"], given["seconds"], given["connections"])
    return report


def written(out):
    """The report of the run in out, from its history; bench-replication.json written from it."""
    return recorded.written(out, FIGURES, figures(*recorded.load(out)))


def report(out, run, *, finished=None):
    """bench-replication.json and the page from out/history.jsonl alone; (report, None): the predictions stand
    beside the figures, and the exit status never depended on them."""
    return recorded.report(out, run, written=written, page=write, finished=finished)


def summarise(samples, distances, seconds, connections):
    """Per (N, k): the median of the rounds' median and p99 latencies, writes per second per connection, the
    relays' CPU, and the prediction beside the median with the difference."""
    rows = []
    for (n, k), rounds in samples.items():
        medians = [statistics.median(r["latencies_ms"]) for r in rounds if r["latencies_ms"]]
        p99s = [percentile(r["latencies_ms"], 0.99) for r in rounds if r["latencies_ms"]]
        rows.append({"replicas": n, "k": k, "distances_ms": list(distances_of(n, distances).values()),
                     "median_ms": round(statistics.median(medians), 3) if medians else None,
                     "per_round_median_ms": [round(m, 3) for m in medians],
                     "p99_ms": round(statistics.median(p99s), 3) if p99s else None,
                     "writes_per_s_per_connection": round(statistics.median(
                         len(r["latencies_ms"]) / seconds / connections for r in rounds), 1),
                     "short": sum(r["short"] for r in rounds),
                     # The relays' CPU as a share of one core while the point was measured: the distance's own cost.
                     "relays_cpu_pct": round(100 * statistics.median(r["relay_cpu_s"] for r in rounds) / seconds, 1)})
    for row in rows:
        alone = next(r["median_ms"] for r in rows if (r["replicas"], r["k"]) == (row["replicas"], 0))
        if alone is None or row["median_ms"] is None:
            row["predicted_ms"] = row["difference_ms"] = None
            continue
        row["predicted_ms"] = round(predicted_ms(alone, row["replicas"], row["k"], distances), 3)
        row["difference_ms"] = round(row["median_ms"] - row["predicted_ms"], 3)
    return rows


def setting(report):
    return (f"{report['connections']} connections, {report['rounds']} rounds of {report['seconds']:g} s per (N, k), "
            "medians of the rounds' medians; predicted: the median at k = 0 plus 2 x the k-th nearest replica's "
            "distance")


def table(report):
    """The report as a table: one row per store, N and k."""
    rows = []
    for store, points_measured in report["stores"].items():
        for row in points_measured:
            figures = [f"{row[key]:.2f}" if row[key] is not None else "-"
                       for key in ("median_ms", "predicted_ms", "difference_ms", "p99_ms")]
            short = f" ({row['short']} short of k)" if row["short"] else ""
            rows.append([store, row["replicas"], ", ".join(f"{d:g}" for d in row["distances_ms"]), row["k"], *figures,
                         f"{row['writes_per_s_per_connection']:g}{short}", f"{row['relays_cpu_pct']:g}"])
    return Table.of(["store", "N", "distances (ms each way)", "k", "median ms", "predicted ms", "difference ms",
                     "p99 ms", "writes/s per connection", "relays' CPU %"], rows)


def headline(report):
    """Per store, its last point (the most replicas, k = all): the median beside its prediction."""
    parts = []
    for store, rows in report["stores"].items():
        row = rows[-1]
        if row["median_ms"] is None:
            parts.append(f"{store} N={row['replicas']} k={row['k']}: no write measured")
        else:
            predicted = "none" if row["predicted_ms"] is None else f"{row['predicted_ms']:.2f} ms"
            parts.append(f"{store} N={row['replicas']} k={row['k']}: {row['median_ms']:.2f} ms, predicted {predicted}")
    return "; ".join(parts)


def write(out, run, report, *, finished=None):
    """The page (reports/page.py): the setting and the table; every figure from history.jsonl."""
    page.write(out, run, title="What a write that waits for k of N replicas costs", finished=finished,
               headline=headline(report),
               sections=[("", page.paragraphs(setting(report), "Every figure is computed from history.jsonl "
                                              f"(recheck: python -m loadtest recheck {out}).")),
                         ("Writes", table(report).html())])
