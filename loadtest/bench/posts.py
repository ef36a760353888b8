"""`python -m loadtest bench-posts`: µs per message post on each database, with and without the room lock.

Its history (loadtest/bench/readings.py) holds, per database, the batches
of the post with the room lock and mark ("locked") and without
("unlocked"), taken alternately; bench-posts.json, the table and the page
are computed from it alone, by the run and by recheck.
"""

from pathlib import Path

from labcore import registry
from loadtest.bench import readings
from loadtest.bench.in_process import post_cost
from loadtest.bench.wrk import durability
from loadtest.cli import names_of
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-posts"
HELP = "µs per message post, with and without the room lock"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("--databases", type=names_of(registry.DATABASES, "database"), default="sqlite,postgres",
                        help=f"comma-separated, of: {', '.join(registry.DATABASES)}")
    parser.add_argument("--repeat", type=int, default=2000, help="posts per variant and database")
    parser.add_argument("--out", type=Path, default=Path("results") / NAME)


def main(args):
    with readings.recording(args.out, NAME, args.run.command, databases=args.databases,
                            repeat=args.repeat) as recorded:
        post_cost(args.databases, recorded=recorded, repeat=args.repeat)
    figured, _ = report(args.out, args.run)
    print(table(figured).markdown())
    print(durability())
    print(f"figures: {args.out / (NAME + '.json')}; report: {args.out / page.REPORT_FILE}")
    return 0


def figures(recorded):
    """bench-posts.json: per database, µs a post before (no room lock) and after (median batch), what the lock
    and mark add and the ratio of the two."""
    rows = []
    for (database,), measures in readings.measured(recorded, "database", of=("databases",)).items():
        before, after = readings.us(measures["unlocked"]), readings.us(measures["locked"])
        rows.append({"database": database, "before_us": before, "after_us": after,
                     "added_us": round(after - before, 1), "ratio": round(after / before, 2),
                     "posts_per_batch": measures["locked"]["calls"]})
    return rows


def table(figured):
    return Table.of(["database", "µs per post before (no room lock)", "after (room lock and mark)", "added µs",
                     "ratio"],
                    [[row["database"], row["before_us"], row["after_us"], row["added_us"], row["ratio"]]
                     for row in figured])


def report(out, run, *, finished=None):
    """bench-posts.json and the page from out/history.jsonl alone; (figures, None): no hypothesis."""
    recorded = readings.loaded(out)
    figured = figures(recorded)
    return readings.written(
        out, NAME, recorded, figured, run, title="What a message post costs", table=table(figured),
        finished=finished, headline=f"µs a post with and without the room lock, on {len(figured)} databases",
        setting="µs a post: the median of 9 batches; post_message against the same insert without the lock and "
                "the mark, batch by batch alternately in one process, each database fresh")
