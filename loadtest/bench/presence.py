"""`python -m loadtest bench-presence`: a heartbeat's and a poll's cost in each presence store, by room size."""

import json

from labcore import registry
from loadtest.bench.in_process import micro
from loadtest.bench.wrk import durability
from loadtest.reports.tables import Table

NAME = "bench-presence"
HELP = "heartbeat and poll cost by room size"


def add_arguments(parser):
    parser.add_argument("--sizes", default="10,1000,10000")


def main(args):
    figures = micro("presence", stores_to_run=list(registry.PRESENCE_STORES), argument=args.sizes)
    print(Table.of(["store", "online", "heartbeat µs", "poll µs (changes since)", "full list µs",
                    "in Redis: heartbeat µs", "in Redis: poll µs"],
                   [[row["store"], row["online"], row["heartbeat_us"], row["poll_us"], row["full_list_us"],
                     row["heartbeat_server_us"] or "-", row["poll_server_us"] or "-"] for row in figures]).markdown())
    print(durability())
    print(json.dumps(figures))
    return 0
