"""`python -m loadtest bench`: our stores, Django's stock engines, the floor and the ceiling in one run.

One tiny run (two rounds of a second each, five rows) checks the wiring,
not the figures: the stock engine's cluster comes up, the floor answers on
our stores' instances, the store commands are counted by Redis, a row
with middleware layers left out answers the poll mix and logins, and every
CPU figure carries its spread and its ratios.
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from deploy.cluster import BLOCK, Topology, free_base_port, load, port_free, ports, servers
from loadtest.__main__ import main
from loadtest.bench import cost, profile, profile_report, stores_report
from loadtest.bench import stores as bench_stores
from loadtest.experiments.configs import parse_config
from loadtest.harness import history
from loadtest.harness.topologies import TOPOLOGY_FORMS

STORES = ["memory", "redis", "stock_cache_redis", "redis:STORE_BREAKER_INTERVAL=0", "memory:MIDDLEWARE_OFF=all"]


def _free_blocks(count):
    """A base port whose `count` consecutive cluster blocks are free now."""
    for _ in range(50):
        base = free_base_port()
        if all(port_free(port) for port in range(base, base + count * BLOCK)):
            return base
    pytest.fail(f"no {count} free blocks of ports")


@pytest.fixture
def out():
    """A short folder: HAProxy's socket path in it must stay under 98 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(600)
def test_bench_reports_cpu_floor_stock_engines_and_commands(out):
    report = bench_stores.bench(stores_to_run=STORES, rounds=2, seconds=1, connections=2,
                          port=_free_blocks(len(STORES)), out=out)
    assert stores_report.written(out) == report  # every figure from the run's history.jsonl alone
    stores = report["stores"]
    for store in STORES:
        runs = report["raw"][store]
        assert all(run["bad_responses"] == 0 for mix in runs.values() for run in mix), runs
        spread = stores[store]["poll_direct"]["server_us_spread"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    # The floor answers (BENCH_VIEWS=1) on our stores' instances only, and sends what the poll mix sends.
    assert [len(report["raw"][store].get("floor_direct", [])) for store in STORES] == [2, 2, 0, 0, 0]
    assert stores["redis"]["floor_direct"]["server_us"]["median"] > 0
    commands = report["commands"]
    assert commands["redis"] == {"poll": {"redis": 1}, "heartbeat": {"redis": 2}, "me": {"redis": 1},
                                 "floor poll": {"redis": 1}, "floor heartbeat": {"redis": 2},
                                 "floor me": {"redis": 1}}
    assert commands["stock_cache_redis"] == {"poll": {"redis": 1}, "heartbeat": {"redis": 2}, "me": {"redis": 1}}
    assert commands["memory"] == {kind: {} for kind in commands["redis"]}
    # Ours against the stock engine on the same store, round by round, and the targets on CPU.
    assert set(stores["redis"]["poll_direct"]["cpu_to_stock"]) == {"stock_cache_redis"}
    # A variant is its store with a guarantee switched off, compared with the same stock engine.
    assert commands["redis:STORE_BREAKER_INTERVAL=0"] == commands["stock_cache_redis"]
    assert set(stores["redis:STORE_BREAKER_INTERVAL=0"]["poll_direct"]["cpu_to_stock"]) == {"stock_cache_redis"}
    # Memory with every middleware layer that may go left out (MIDDLEWARE_OFF reaches its cluster as a setting):
    # it answered every request above, and is set against memory as it ships.
    assert set(stores["memory:MIDDLEWARE_OFF=all"]["poll_direct"]["cpu_to_shipped"]) == {"min", "median", "max"}
    names = [target["target"] for target in report["targets"]]
    assert "redis: server CPU a request at most stock_cache_redis's (every round)" in names
    assert any(name.startswith("memory's poll mix at least 0.8 of the bare Django view") for name in names)
    # Without latency relays (deploy up --no-relays): each cluster's logs (kept by `down`) name no relay.
    assert report["relays"] is False and list(out.glob("clusters/c*/logs/app1.log"))
    assert not list(out.glob("clusters/c*/logs/*.relay.log")), "a latency relay ran: bench measured its hop"


@pytest.mark.timeout(600)
def test_bench_measures_a_row_under_a_topology_against_memory_and_stops_its_cluster(out):
    rows, base = ["memory", "redis@sentinel"], _free_blocks(2)
    assert main(["bench", "--stores", ",".join(rows), "--rounds", "1", "--seconds", "1", "--connections", "2",
                 "--port", str(base), "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    row = report["stores"]["redis@sentinel"]
    assert set(row["poll_direct"]["cpu_to_base"]) == {"min", "median", "max"}
    assert all(run["bad_responses"] == 0 for mix in report["raw"]["redis@sentinel"].values() for run in mix)
    # Its own floor; no stock engine's; no count of commands (MONITOR would see the Sentinels' own); no target.
    assert row["floor_direct"]["server_us"]["median"] > 0 and row["poll_direct"]["cpu_to_stock"] == {}
    assert set(report["commands"]) == {"memory"}
    assert not [t for t in report["targets"] if "redis@sentinel" in t["target"]]
    # Its cluster ran under Sentinel (down keeps the logs), and both clusters are gone: every port free again.
    assert list(out.glob("clusters/c1/logs/sentinel*.log")) and not list(out.glob("clusters/c0/logs/sentinel*"))
    assert all(load(out / "clusters" / f"c{index}") is None for index in range(len(rows)))
    busy = [port for port in range(base, base + len(rows) * BLOCK) if not port_free(port)]
    assert not busy, f"ports still taken after bench: {busy}"


@pytest.mark.parametrize("row, parsed", [
    ("redis", ("redis", {})),
    ("stock_cached_db", ("stock_cached_db", {})),
    ("redis:STORE_BREAKER_INTERVAL=0:USER_CACHE_SECONDS=0",
     ("redis", {"STORE_BREAKER_INTERVAL": "0", "USER_CACHE_SECONDS": "0"})),
])
def test_a_bench_row_is_a_store_with_settings_of_its_own(row, parsed):
    got = cost.parse_row(row)
    assert (got.store, got.settings) == parsed
    assert (got.topology_name, got.db, got.topology, got.shipped) == ("", "sqlite", Topology(), parsed[0])


@pytest.mark.parametrize("name", ["redis@sentinel", "redis@sentinel-sync1", "redis@cluster", "db@pg",
                                  "db@pg-any1", "db@patroni", "db@patroni-first1"])
def test_a_bench_row_may_carry_the_topology_of_an_experiments_configuration(name):
    row = cost.parse_row(f"{name}:USER_CACHE_SECONDS=0")
    config = parse_config(name)
    assert (row.store, row.db, row.topology) == (config.sessions, config.db, config.topology)
    assert (row.topology_name, row.settings, row.shipped) == (name.split("@")[1], {"USER_CACHE_SECONDS": "0"}, name)
    # Its own floor, through the same clients under the topology; no stock engine's on a topology row.
    assert cost.has_floor(name) and not cost.alone(name)
    # MONITOR sees one Redis: counted with Redis alone only, so under PostgreSQL's topologies, not Redis's.
    assert cost.counts_commands(name) is name.startswith("db@")


@pytest.mark.parametrize("name", ["redis@sentinel", "redis@sentinel-sync2", "redis@cluster", "db@pg", "db@pg-first2",
                                  "db@patroni", "db@patroni-first2"])
def test_every_topology_a_bench_row_may_carry_fits_its_clusters_block_of_ports(name):
    row, base = cost.parse_row(name), 20000
    used = ports(base, instances=1, servers=servers(), topology=row.topology)
    assert min(used) >= base and max(used) < base + BLOCK, sorted(used)


@pytest.mark.parametrize("row, named", [("nowhere", "SESSION_STORE='nowhere' is not one of"),
                                        ("redis:breaker", "NAME=value"), ("redis:lower=1", "NAME=value"),
                                        ("redis@raft:USER_CACHE_SECONDS=0", "'redis@raft:USER_CACHE_SECONDS=0': "
                                                                            "the topology after '@' is one of: "
                                                                            "sentinel "),
                                        ("redis@sentinel-sync5", "'redis@sentinel-sync5': "),
                                        ("stock_cache_redis@sentinel", "stock engines run on one Redis only"),
                                        ("memory@cluster", "starts no Redis, so a Redis topology")])
def test_a_bad_bench_row_is_refused_by_name(row, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        cost.parse_row(row)


def test_a_bad_topology_is_refused_before_anything_starts_naming_the_row_and_the_choices(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--stores", "memory,redis@raft", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "'redis@raft': the topology after '@' is one of: sentinel (" in error
    assert all(form in error for form in TOPOLOGY_FORMS), error
    assert not (out / "history.jsonl").exists(), "refused before anything was recorded"


@pytest.mark.parametrize("first", ["memory:MIDDLEWARE_OFF=all", "redis@sentinel"])
def test_a_first_row_with_settings_or_a_topology_is_refused_as_the_base(tmp_path, capsys, first):
    out = tmp_path / "out"
    assert main(["bench", "--stores", f"{first},memory", "--out", str(out)]) == 1
    assert f"the first row, {first!r}, is the base" in capsys.readouterr().err
    assert not (out / "history.jsonl").exists(), "refused before anything was recorded"


def test_bench_profile_refuses_a_topology_row(tmp_path):
    with pytest.raises(ValueError, match="'redis@sentinel': bench-profile starts a store alone"):
        profile.profile("redis@sentinel", seconds=1, connections=1, port=20000, out=tmp_path)


def test_a_sample_counts_for_its_innermost_frame_that_belongs_to_a_layer():
    server = ['process 1:"gunicorn"', "run (threading.py:1010)", "handle (gunicorn/workers/gthread.py:553)",
              "__call__ (django/core/handlers/wsgi.py:124)", "__call__ (accounts/middleware.py:40)"]
    assert profile_report.layer_of(server) == "middleware"
    session = [*server, "load (labcore/sessions/redis.py:30)", "_get (django/utils/functional.py:1)"]
    assert profile_report.layer_of(session) == "session engine"
    redis_read = [*session, "get (django_redis/cache.py:90)", "read (redis/connection.py:1)"]
    assert profile_report.layer_of(redis_read) == "redis-py"
    assert profile_report.layer_of(['process 1:"gunicorn"']) == profile_report.OTHER


@pytest.mark.timeout(300)
def test_bench_profile_breaks_an_instances_cpu_into_layers_summing_to_all_of_it(out, tmp_path):
    report = profile.profile("redis", seconds=3, connections=2, port=_free_blocks(1), out=out)
    # Saved as it ran: its history and py-spy's samples alone give profile.json again, in another folder.
    for name in (history.FILE, profile.STACKS):
        shutil.copy(out / name, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    assert (tmp_path / "profile.json").read_text() == (out / "profile.json").read_text()
    assert json.loads((out / "profile.json").read_text()) == report
    layers = report["layers"]
    assert sum(layers.values()) == pytest.approx(1, abs=0.001)
    assert layers["redis-py"] > 0 and layers["session engine"] > 0 and layers["the server"] > 0, layers
    assert report["server_us"] > 0
    assert report["commands"]["heartbeat"] == {"redis": 2}
    assert "| total | 100.0% |" in profile_report.table(report).markdown()
    assert not list(out.glob("cluster/logs/*.relay.log")), "a latency relay ran: bench-profile measured its hop"
