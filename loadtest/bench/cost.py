"""What `bench` adds to say what a store costs per request: the floor, the stock engines, commands counted.

Beside each of the lab's stores, `bench` runs Django's stock engines on
the same store (the registry's comparison rows) and, on each of our
stores' instances, the floor: `/bench/floor/<poll|heartbeat|me>`
(chat/floor.py, served with BENCH_VIEWS=1), the poll mix's store round
trips through the same clients with none of our code around them. So a
store's server CPU per request splits into the bare Django view (the
ceiling), the store and its client (the floor minus the ceiling), and ours
(the poll mix minus the floor). A row may also be one of our stores with
a guarantee switched off for its cluster only (`parse_row`), so what the
guarantee costs is measured in the same rounds: the circuit breaker
(`redis:STORE_BREAKER_INTERVAL=0`), or middleware layers
(`memory:MIDDLEWARE_OFF=all`, labcore/middleware_off.py). A row may also
start its store under a topology (`redis@sentinel-sync1`, `db@patroni`),
with a floor of its own and no stock engine beside it.

The store commands a request of each kind sends are counted by the
servers themselves (labcore/roundtrips.py: Redis's MONITOR feed, memcached's
counters) on a few requests sent one at a time after the timed rounds, so
counting never slows a timed request. Database statements are not
countable from outside the process; tests/test_roundtrips.py pins them.
"""

import urllib.request
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field

from deploy.cluster import Topology, servers, servers_for, site_env
from labcore import registry, roundtrips
from loadtest.harness import topologies
from loadtest.reports.tables import Table

# `bench`'s default: our stores first (memory, the base of the ratios), then Django's stock engines.
BENCH_STORES = [name for name, row in {**registry.SESSION_STORES, **registry.COMPARISON_SESSION_STORES}.items()
                if set(row.servers) <= set(servers())]
# Each of our stores with the stock engines on the same store, whose CPU it must not exceed.
STOCK_OF = {"redis": ("stock_cache_redis", "stock_cache_django_redis"), "cached_db": ("stock_cached_db",)}
CLUSTER_ENV = {"BENCH_VIEWS": "1"}  # the floor answers only with it (chat/floor.py)
FLOOR = "floor_direct"

FLOOR_MIX = """
local i = 0
local names = {"poll", "heartbeat", "me"}
request = function()
  i = i + 1
  return wrk.format("GET", "/bench/floor/" .. names[i % 3 + 1])
end
"""

SAMPLES = 5  # requests of each kind counted; the counts are exact, so few suffice


@dataclass(frozen=True)
class Row:
    """A row of `bench --stores`, parsed: its store, its topology (and the database that goes with it), its
    settings."""

    store: str
    settings: dict = field(default_factory=dict)
    topology_name: str = ""  # what follows '@': "" for the store alone
    db: str = "sqlite"
    topology: Topology = field(default_factory=Topology)

    @property
    def shipped(self):
        """The row without its settings: its store as it ships, under its topology if it has one."""
        return f"{self.store}@{self.topology_name}" if self.topology_name else self.store


def parse_row(row):
    """A row of `bench --stores`: a store, "redis"; under a topology, "redis@sentinel-sync1" (the names of
    the experiments' configurations, loadtest/harness/topologies.py); either with settings of its own,
    "redis:STORE_BREAKER_INTERVAL=0", "db@pg:USER_CACHE_SECONDS=0".

    Return a Row. A variant measures what a guarantee costs by switching it
    off beside the store as it ships; a topology row what the store costs
    under that topology. ValueError (or the registry's ConfigError) names the row and what it may be.
    """
    head, *settings = row.split(":")
    store, _, topology_name = head.partition("@")
    env = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        if not equals or not name.isupper() or not name.replace("_", "").isalnum():
            raise ValueError(f"{row!r}: each setting after the store must be NAME=value, e.g. "
                             "redis:STORE_BREAKER_INTERVAL=0")
        env[name] = value
    registry.session_store(store)  # a ConfigError naming the stores for an unknown one
    db, topology = topologies.topology(row, topology_name)
    if topology_name:
        _placeable(row, store, db, topology)
    return Row(store, env, topology_name, db, topology)


def _placeable(row, store, db, topology):
    """Refuse, before any cluster starts, a topology the row's cluster cannot take or would not use: Django's
    stock engines run on one Redis only (the site refuses them under Sentinel or Cluster), and a Redis topology
    shapes nothing in a cluster that starts no Redis (`memory@sentinel`)."""
    if store in registry.COMPARISON_SESSION_STORES:
        raise ValueError(f"{row!r}: Django's stock engines run on one Redis only, under no topology")
    started = servers_for(sessions=store, presence=registry.session_store(store).presence, db=db)
    if topology.redis != "single" and "redis" not in started:
        raise ValueError(f"{row!r}: a cluster of {store} starts no Redis, so a Redis topology would shape nothing")


def alone(row):
    """Whether the row is a store as it ships: no settings of its own, no topology (the base of every ratio and
    target must be)."""
    parsed = parse_row(row)
    return not parsed.settings and not parsed.topology_name


def has_floor(row):
    """The floor is measured on our stores' instances as they ship, and under each topology (chat/floor.py asks
    the same clients the site does, through Sentinel, Redis Cluster or a PostgreSQL primary alike, so a
    topology has a floor of its own); a stock engine's store, or a variant's, has the same floor as ours."""
    parsed = parse_row(row)
    return parsed.store not in registry.COMPARISON_SESSION_STORES and not parsed.settings


def counts_commands(row):
    """Whether the store commands of the row's requests can be counted: not with Redis under Sentinel or in a
    Cluster. MONITOR watches one node: under Sentinel the primary's feed carries the Sentinels' own PING, INFO
    and PUBLISH, which a count cannot tell from the site's; a Cluster spreads the site's commands over its
    primaries. Database statements are not counted for any row (tests/test_roundtrips.py pins them)."""
    return parse_row(row).topology.redis == "single"


def requests(env):
    """The poll mix's three requests, as (kind, method, path, headers), and the floor's three."""
    cookie = {"Cookie": env["BENCH_COOKIE"]}
    return [
        ("poll", "GET", f"/api/rooms/bench/messages?after={env['BENCH_AFTER']}", cookie),
        ("heartbeat", "POST", "/api/rooms/bench/presence", {**cookie, "X-CSRFToken": env["BENCH_CSRF"]}),
        ("me", "GET", "/api/me", cookie),
        *((f"floor {name}", "GET", f"/bench/floor/{name}", {}) for name in ("poll", "heartbeat", "me")),
    ]


def _send(url, method, path, headers):
    request = urllib.request.Request(url + path, method=method, headers=headers, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def commands_per_request(cluster, env, url, *, floor=True):
    """{kind: {"redis": n, "memcached": n}} per request of each kind, sent to `url` (the instance itself);
    with `floor`, the floor's requests too."""
    settings = site_env(cluster)
    # deploy sets a store's variable only when the cluster runs that store.
    redis_url, memcached = settings.get("REDIS_URL"), settings.get("MEMCACHED_URL")
    location = memcached.split("://", 1)[-1] if memcached else None
    counted = {}
    for kind, method, path, headers in requests(env):
        if kind.startswith("floor") and not floor:
            continue
        _send(url, method, path, headers)  # connections open, scripts loaded: the steady state
        counts = Counter()
        with_redis = roundtrips.redis_commands(redis_url, counts) if redis_url else nullcontext()
        with_memcached = roundtrips.memcached_commands(location, counts) if location else nullcontext()
        with with_redis, with_memcached:
            for _ in range(SAMPLES):
                _send(url, method, path, headers)
        counted[kind] = {store: round(number / SAMPLES, 2) for store, number in roundtrips.per_store(counts).items()}
    return counted


def _spread(values):
    ordered = sorted(values)
    return {"min": round(ordered[0], 3), "median": round(ordered[len(ordered) // 2], 3), "max": round(ordered[-1], 3)}


def _cpu(results, store, mix="poll_direct"):
    return [run["server_us"] for run in results[store][mix]]


def summarise(results, stores_to_run, summary):
    """Add to `summary` each store's CPU a request with its spread, and round by round its ratios to the base
    (the first store), to its floor and, for a store without topology, to the stock engines on its store (above
    1: ours costs more); a row with settings of its own also to its row as it ships (`Row.shipped`), when that
    ran too (below 1: they saved CPU)."""
    base = _cpu(results, stores_to_run[0])
    for store in stores_to_run:
        ours, row = _cpu(results, store), summary[store]
        parsed = parse_row(store)
        shipped = parsed.shipped
        row["poll_direct"]["server_us_spread"] = _spread(ours)
        row["poll_direct"]["cpu_to_base"] = _spread([a / b for a, b in zip(ours, base)])
        if FLOOR in results[store]:
            floor = _cpu(results, store, FLOOR)
            row[FLOOR]["server_us"] = _spread(floor)
            row["poll_direct"]["cpu_to_floor"] = _spread([a / b for a, b in zip(ours, floor)])
        row["poll_direct"]["cpu_to_stock"] = {
            stock: _spread([a / b for a, b in zip(ours, _cpu(results, stock))])
            for stock in STOCK_OF.get(parsed.store, ()) if stock in results and not parsed.topology_name}
        if shipped != store and shipped in results:
            row["poll_direct"]["cpu_to_shipped"] = _spread([a / b for a, b in zip(ours, _cpu(results, shipped))])
    return summary


def targets(results, stores_to_run, ceiling):
    """Issue 34's targets on server CPU a request, as (name, figure, needed): met when figure >= needed."""
    base = stores_to_run[0]
    base_us = _cpu(results, base)
    checks = []
    if ceiling:
        checks.append((f"{base}'s poll mix at least 0.8 of the bare Django view (server CPU a request, "
                       "every round)", min(c / a for a, c in zip(base_us, ceiling)), 0.8))
    for store in ("redis", "cached_db"):
        if store not in stores_to_run or store == base:
            continue
        floors = _cpu(results, store, FLOOR) if FLOOR in results[store] else [0] * len(base_us)
        limits = [max(1.11 * b, 1.1 * f) for b, f in zip(base_us, floors)]
        checks.append((f"{store}: server CPU a request at most 1.11 x {base}'s, or within 10 % of its floor "
                       "where that is higher (every round)",
                       min(limit / a for limit, a in zip(limits, _cpu(results, store))), 1))
        for stock in STOCK_OF[store]:
            if stock in stores_to_run:
                checks.append((f"{store}: server CPU a request at most {stock}'s (every round)",
                               min(b / a for a, b in zip(_cpu(results, store), _cpu(results, stock))), 1))
    return checks


def table(report):
    """The cost table: CPU a request (median, min-max), to the base, floor, stock, commands."""
    stores = [store for store in report["stores"] if store != "ceiling"]
    rows = []
    for store in stores:
        direct = report["stores"][store]["poll_direct"]
        floor = report["stores"][store].get(FLOOR, {}).get("server_us")
        commands = report.get("commands", {}).get(store, {})
        rows.append([store, _range(direct["server_us_spread"], ".0f"), _range(direct["cpu_to_base"]),
                     _range(floor, ".0f") if floor else "-",
                     _range(direct["cpu_to_floor"]) if "cpu_to_floor" in direct else "-",
                     ", ".join(f"{s}: {_range(r)}" for s, r in direct["cpu_to_stock"].items()) or "-",
                     _commands(commands, ""), _commands(commands, "floor ")])
    return Table.of(["store", "server CPU µs a request", f"to {stores[0]}", "floor µs", "to floor",
                     "to stock engine", "store commands: poll, heartbeat, /api/me", "floor's"], rows)


def _range(spread, spec=".2f"):
    return f"{spread['median']:{spec}} ({spread['min']:{spec}}-{spread['max']:{spec}})"


def _commands(commands, prefix):
    kinds = [commands.get(prefix + kind) for kind in ("poll", "heartbeat", "me")]
    if not any(kind is not None for kind in kinds):
        return "-"
    return ", ".join(" ".join(f"{n:g} {store[0].upper()}" for store, n in (kind or {}).items()) or "0"
                     for kind in kinds)
