"""`python -m loadtest bench-sessions`: µs to load and save a session in each store, and its bytes.

Its history (loadtest/bench/readings.py) holds each store's "load" and
"save" batches and its "bytes"; bench-sessions.json, the table and the
page are computed from it alone, by the run and by recheck.
"""

from pathlib import Path

from labcore import registry
from loadtest.bench import readings
from loadtest.bench.in_process import micro
from loadtest.bench.stores import SESSION_STORES
from loadtest.bench.wrk import durability
from loadtest.cli import chosen, listed
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-sessions"
HELP = "µs to load and save a session, and its bytes"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--stores", default=",".join(SESSION_STORES))
    parser.add_argument("--repeat", type=int, default=2000, help="loads, and saves, per store")
    parser.add_argument("--out", type=Path, default=Path("results") / NAME)


def main(args):
    try:
        stores_to_run = chosen(listed(args.stores), registry.SESSION_STORES, "session store")
    except ValueError as error:
        raise ValueError(f"--stores: {error}") from None
    with readings.recording(args.out, NAME, args.run.command, stores=stores_to_run, repeat=args.repeat) as recorded:
        micro("sessions", stores_to_run=stores_to_run, recorded=recorded, repeat=args.repeat)
    figured, _ = report(args.out, args.run)
    print(table(figured).markdown())
    print(durability())
    print(f"figures: {args.out / (NAME + '.json')}; report: {args.out / page.REPORT_FILE}")
    return 0


def figures(recorded):
    """bench-sessions.json: per store, µs to load and to save a session (median batch) and its bytes."""
    return [{"store": store, "load_us": readings.us(measures["load"]), "save_us": readings.us(measures["save"]),
             "bytes": measures["bytes"]["bytes"]}
            for (store,), measures in readings.measured(recorded, "store", of=("stores",)).items()]


def table(figured):
    return Table.of(["store", "load µs", "save µs", "bytes per session"],
                    [[row["store"], row["load_us"], row["save_us"], row["bytes"]] for row in figured])


def report(out, run, *, finished=None):
    """bench-sessions.json and the page from out/history.jsonl alone; (figures, None): no hypothesis."""
    recorded = readings.loaded(out)
    figured = figures(recorded)
    return readings.written(
        out, NAME, recorded, figured, run, title="The session layer alone", table=table(figured), finished=finished,
        headline=f"µs to load and save a session, and its bytes, in {len(figured)} stores",
        setting="µs a call: the median of 9 batches; a save first loads the session, as a request does; each "
                "store a server alone on loopback, called in a fresh process")
