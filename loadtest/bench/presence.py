"""`python -m loadtest bench-presence`: a heartbeat's and a poll's cost in each presence store, by room size.

Its history (loadtest/bench/readings.py) holds, per store and room size
("online"), the batches of a heartbeat, a poll and the full list, and for
a store kept in Redis, Redis's own commandstats for a heartbeat and a poll;
bench-presence.json, the table and the page are computed from it alone,
by the run and by recheck.
"""

from pathlib import Path

from labcore import registry
from loadtest.bench import readings
from loadtest.bench.in_process import micro
from loadtest.bench.wrk import durability
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-presence"
HELP = "heartbeat and poll cost by room size"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--repeat", type=int, default=2000, help="heartbeats, and polls, per store and size")
    parser.add_argument("--out", type=Path, default=Path("results") / NAME)


def main(args):
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        raise ValueError(f"--sizes wants numbers online, comma-separated, e.g. 10,1000; not {args.sizes!r}") from None
    stores_to_run = list(registry.PRESENCE_STORES)
    with readings.recording(args.out, NAME, args.run.command, stores=stores_to_run, sizes=sizes,
                            repeat=args.repeat) as recorded:
        micro("presence", stores_to_run=stores_to_run, recorded=recorded, repeat=args.repeat,
              argument=",".join(map(str, sizes)))
    figured, _ = report(args.out, args.run)
    print(table(figured).markdown())
    print(durability())
    print(f"figures: {args.out / (NAME + '.json')}; report: {args.out / page.REPORT_FILE}")
    return 0


def figures(recorded):
    """bench-presence.json: per store and room size, µs a heartbeat, a poll and the full list (median batch), and
    the µs Redis itself spent a heartbeat and a poll (None for a store not in Redis)."""
    measured = readings.measured(recorded, "store", "online", of=("stores", "sizes"))
    return [{"store": store, "online": online, "heartbeat_us": readings.us(measures["heartbeat"]),
             "poll_us": readings.us(measures["poll"]), "full_list_us": readings.us(measures["full_list"]),
             "heartbeat_server_us": _in_redis(measures.get("heartbeat_server")),
             "poll_server_us": _in_redis(measures.get("poll_server"))}
            for (store, online), measures in measured.items()]


def _in_redis(sample):
    return None if sample is None else round(sample["commandstats"]["usec_per_call"], 1)


def table(figured):
    return Table.of(["store", "online", "heartbeat µs", "poll µs (changes since)", "full list µs",
                     "in Redis: heartbeat µs", "in Redis: poll µs"],
                    [[row["store"], row["online"], row["heartbeat_us"], row["poll_us"], row["full_list_us"],
                      row["heartbeat_server_us"] or "-", row["poll_server_us"] or "-"] for row in figured])


def report(out, run, *, finished=None):
    """bench-presence.json and the page from out/history.jsonl alone; (figures, None): no hypothesis."""
    recorded = readings.loaded(out)
    figured = figures(recorded)
    sizes = sorted({row["online"] for row in figured})
    return readings.written(
        out, NAME, recorded, figured, run, title="What presence costs by room size", table=table(figured),
        finished=finished, headline=f"a heartbeat, a poll and the full list in {len({r['store'] for r in figured})} "
                                    f"stores, with {', '.join(map(str, sizes))} online",
        setting="µs a call: the median of 9 batches; a poll reads with the version the client holds (the changes "
                "only); in Redis: the µs Redis itself spent a call (INFO commandstats)")
