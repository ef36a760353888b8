"""`python -m loadtest bench-sessions`: µs to load and save a session in each store, and its bytes."""

import json

from loadtest.bench.in_process import micro
from loadtest.bench.stores import SESSION_STORES
from loadtest.bench.wrk import durability
from loadtest.reports.tables import Table

NAME = "bench-sessions"
HELP = "µs to load and save a session, and its bytes"


def add_arguments(parser):
    parser.add_argument("--stores", default=",".join(SESSION_STORES))


def main(args):
    figures = micro("sessions", stores_to_run=args.stores.split(","))
    print(Table.of(["store", "load µs", "save µs", "bytes per session"],
                   [[row["store"], row["load_us"], row["save_us"], row["bytes"]] for row in figures]).markdown())
    print(durability())
    print(json.dumps(figures))
    return 0
