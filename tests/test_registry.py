"""One row per store: a new row is picked up by everyone who reads the registry, with no other edit."""

import dataclasses
import subprocess
import sys

import pytest
import redis

from deploy import cluster
from labcore import registry
from labcore.config import store_settings
from tests.clusters import ROOT
from tests.conftest import use_stores
from tests.made_up_kind import KIND, SLOTS, TWIN_DB
from tests.made_up_row import ROW


@pytest.fixture
def made_up(monkeypatch):
    monkeypatch.setitem(registry.SESSION_STORES, ROW.name, ROW)
    return ROW


def test_settings_come_from_the_row(made_up, tmp_path):
    values = store_settings(session_store=made_up.name, presence_store=made_up.presence,
                            redis_url="redis://127.0.0.1:1/0", memcached_url="memcached://127.0.0.1:1",
                            state_dir=tmp_path, timeout=0.5)
    assert values["SESSION_ENGINE"] == "labcore.sessions.redis"
    assert values["CACHES"]["sessions"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert (values["SERVERS"], values["SHARED_STORE"], values["PRESENCE_STORE"]) == (["redis"], "redis", "memory")


def test_deploy_plans_the_rows_servers(made_up):
    assert cluster.servers_for(sessions=made_up.name, presence="memory", db="sqlite") == ["redis"]
    assert cluster.servers_for(sessions=made_up.name, presence="redis", db="postgres") == ["redis", "postgres"]
    with pytest.raises(cluster.DeployError, match="--sessions 'nowhere' is not one of: .*redis_twin"):
        cluster.servers_for(sessions="nowhere", presence="memory", db="sqlite")


@pytest.mark.parametrize("stock", registry.COMPARISON_SESSION_STORES)
def test_deploy_plans_the_comparison_rows_without_offering_them(stock):
    assert cluster.servers_for(sessions=stock, presence="redis", db="sqlite") == ["redis"]
    with pytest.raises(cluster.DeployError) as refused:
        cluster.servers_for(sessions="nowhere", presence="memory", db="sqlite")
    assert "redis" in str(refused.value) and stock not in str(refused.value)


def test_readyz_checks_what_the_row_needs(made_up, settings, redis_service, memcached_service, redis_db,
                                          tmp_path, db, client):
    use_stores(settings, session_store=made_up.name, presence_store=made_up.presence, redis=redis_service,
               memcached=memcached_service, tmp_path=tmp_path)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checked"] == ["database", "sessions", "counters", "presence"]


def test_the_test_matrix_picks_the_row_up():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.made_up_store", "--collect-only", "-q",
         "tests/test_sessions.py", "tests/test_idle.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_signup_logs_in_and_me_names_the_stores[redis_twin]" in done.stdout


def test_every_row_names_an_engine_that_imports():
    from django.utils.module_loading import import_module, import_string

    for row in registry.SESSION_STORES.values():
        assert hasattr(import_module(row.engine), "SessionStore"), row.name
    for row in registry.PRESENCE_STORES.values():
        assert import_string(row.backend).name == row.name


def test_the_experiments_matrices_come_from_the_rows(made_up):
    from loadtest.experiments import configs as experiment

    assert experiment.matrix("default") == ["memory+roundrobin", "memory+sticky", "db", "cached_db", "redis",
                                            "memcached", "signed_cookies", made_up.name]
    assert experiment.matrix("quick") == ["memory+sticky", "cached_db", "redis"]
    for name in experiment.matrix("default") + experiment.matrix("quick"):
        experiment.parse_config(name)  # each name is one the experiment reads


def test_the_benchmarks_targets_come_from_the_rows(monkeypatch):
    from loadtest.bench import stores_report as bench

    twin = dataclasses.replace(ROW, bench_target=0.7)
    monkeypatch.setitem(registry.SESSION_STORES, twin.name, twin)
    figures = {"poll_direct": {"to_ceiling": {"min": 1}},
               "poll_lb": {"to_base": {"min": 0.8}, "p50_ms": 1, "p99_ms": 2}, "lb_to_direct": {"min": 1}}
    report = {"stores": {"memory": figures, "redis": figures, twin.name: figures}, "load_balancer": {"added": 0}}
    met = {check["target"]: check["met"] for check in bench.targets(report)}
    assert met[f"{twin.name} at least 0.7 of memory in every round (through HAProxy)"] is True
    assert met["redis at least 0.9 of memory in every round (through HAProxy)"] is False
    assert not any(target.startswith("cached_db") for target in met)


@pytest.fixture
def made_up_kind(monkeypatch):
    """The kind's one row, its slot range, and a registry row that needs it."""
    monkeypatch.setitem(cluster.KINDS, KIND.name, KIND)
    monkeypatch.setitem(cluster.STORE_SLOTS, KIND.name, SLOTS)
    monkeypatch.setitem(registry.DATABASES, TWIN_DB.name, TWIN_DB)
    return KIND


def test_deploy_takes_a_made_up_kind_up(made_up_kind, tmp_path):
    assert cluster.servers_for(sessions="db", presence="memory", db="twin_db") == ["twin"]
    state = tmp_path / "state"
    for _ in range(3):  # another process may take a port between the check and the start
        base = cluster.free_base_port()
        assert cluster.ports(base, instances=1, servers=["twin"])[base + SLOTS[0]] == "twin"
        try:
            up = cluster.up(instances=1, sessions="db", presence="memory", db="twin_db", port=base,
                            state_dir=state)
            break
        except cluster.DeployError as exc:
            if "is busy" not in str(exc):
                raise
    try:
        node = up.stores["twin"]
        assert (node["kind"], node["port"]) == ("twin", base + SLOTS[0])
        assert cluster.site_env(up)["TWIN_URL"] == made_up_kind.url(node)
        with redis.Redis(port=node["port"], password=node["password"]) as client:
            assert client.ping()

        def twin():
            return next(row for row in cluster.status(state_dir=state)["stores"] if row["name"] == "twin")

        assert (twin()["role"], twin()["state"]) == ("primary", "up")
        cluster.kill("twin", state_dir=state)
        assert (twin()["role"], twin()["state"]) == ("down", "down")
        cluster.start("twin", state_dir=state)
        assert (twin()["role"], twin()["state"]) == ("primary", "up")
        pid = cluster.load(state).stores["twin"]["pid"]
    finally:
        cluster.down(state)
    assert not cluster.alive(pid)
