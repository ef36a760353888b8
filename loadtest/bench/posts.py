"""`python -m loadtest bench-posts`: µs per message post on each database, with and without the room lock."""

import json

from loadtest.bench.in_process import post_cost
from loadtest.bench.wrk import durability
from loadtest.reports.tables import Table

NAME = "bench-posts"
HELP = "µs per message post, with and without the room lock"


def add_arguments(parser):
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=2000, help="posts per variant and database")


def main(args):
    figures = post_cost(args.databases.split(","), args.repeat)
    print(Table.of(["database", "µs per post before (no room lock)", "after (room lock and mark)", "added µs", "ratio"],
                   [[row["database"], row["before_us"], row["after_us"], row["added_us"], row["ratio"]]
                    for row in figures]).markdown())
    print(durability())
    print(json.dumps(figures))
    return 0
