"""Count the commands one request sends to each store, as the stores themselves see them.

Redis: its MONITOR feed, which lists every command a client sends and marks
the ones a Lua script runs inside Redis (`lua`): those cost no round trip
and are left out, so a presence script counts as the one EVALSHA the site
sends. The database: Django's CaptureQueriesContext (every statement, each
a round trip). memcached: its own `stats` counters before and after.
Nothing is mocked: the counts are the servers' own.

tests/test_roundtrips.py pins them per store through Django's test client;
the Redis and memcached counts work as well around an HTTP request to a
running instance (the database's only in the process that runs the
request), which is how a benchmark can report them beside its timings.
"""

import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager

import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pymemcache.client.base import Client as MemcachedClient

# memcached's counters of commands (stats), each one command sent.
MEMCACHED_COUNTERS = ("cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses", "incr_hits",
                      "incr_misses", "decr_hits", "decr_misses", "cas_hits", "cas_misses", "cas_badval")
MONITOR_TIMEOUT = 30  # seconds for Redis to show a command it has run (a busy machine)


@contextmanager
def redis_commands(url, counts):
    """Add to `counts` ("redis GET": n) the commands clients send Redis during the block."""
    watcher = redis.Redis.from_url(url, socket_timeout=MONITOR_TIMEOUT)
    marker = redis.Redis.from_url(url, socket_timeout=MONITOR_TIMEOUT, single_connection_client=True)
    try:
        marker.ping()  # connected before watching: its greeting is not the block's
        with watcher.monitor() as monitor:
            yield
            # MONITOR lists commands in the order Redis ran them: the marker comes after the block's.
            text = f"roundtrips-{uuid.uuid4().hex}"
            marker.echo(text)
            while (seen := monitor.next_command())["command"] != f"ECHO {text}":
                if seen["client_type"] != "lua":
                    counts["redis " + seen["command"].split(" ", 1)[0].upper()] += 1
    finally:
        marker.close()
        watcher.close()


@contextmanager
def database_statements(counts):
    """Add to `counts` ("database SELECT": n) the statements the site's database connection runs in the block."""
    with CaptureQueriesContext(connection) as captured:
        yield
    for query in captured.captured_queries:
        counts["database " + query["sql"].split(None, 1)[0].upper()] += 1


def _memcached_stats(location):
    server = location.removeprefix("unix:") if location.startswith("unix:") else tuple(location.rsplit(":", 1))
    client = MemcachedClient(server, timeout=MONITOR_TIMEOUT)
    try:
        stats = client.stats()
    finally:
        client.close()
    return {name: int(stats.get(name.encode(), 0)) for name in MEMCACHED_COUNTERS}


@contextmanager
def memcached_commands(location, counts):
    """Add to `counts` ("memcached cmd_get": n) the commands memcached counted during the block.

    Its own `stats` call is no counted command, so asking costs nothing here.
    """
    before = _memcached_stats(location)
    yield
    after = _memcached_stats(location)
    for name in MEMCACHED_COUNTERS:
        if after[name] > before[name]:
            counts["memcached " + name] += after[name] - before[name]


def count_commands(send, *, redis_url=None, memcached_location=None):
    """Run send() once; return a Counter of the commands it sent, by store and command.

    Ask only the servers given (and always the database).
    """
    counts = Counter()
    with ExitStack() as watching:
        if redis_url:
            watching.enter_context(redis_commands(redis_url, counts))
        if memcached_location:
            watching.enter_context(memcached_commands(memcached_location, counts))
        watching.enter_context(database_statements(counts))
        send()
    return counts


def per_store(counts):
    """The totals of a count_commands answer by store: {"redis": 2, "database": 1}."""
    totals = Counter()
    for name, number in counts.items():
        totals[name.split(" ", 1)[0]] += number
    return dict(totals)
