"""The in-process benchmarks' runner: private servers, then loadtest.bench.micro in a fresh process per configuration.

`bench-sessions` and `bench-presence` measure the session layer and the
presence stores alone, `bench-posts` what a post costs on each database,
with and without the room lock; each configuration gets a fresh process
with the site's settings from the environment, as an instance would. Each
reading that process prints goes into the run's history as one sample when
the process ends (a configuration that fails records none).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from deploy.cluster import (
    DeployError,
    free_port,
    server_settings,
    start_server,
    stop_server,
)
from labcore import registry
from loadtest.bench.wrk import BENCH_ENV, DURABLE, ROOT


@contextmanager
def _servers(kinds):
    """Private servers of these kinds on free ports; yield the state folder and {kind: the setting for it}."""
    state = Path(tempfile.mkdtemp(prefix="bench-"))
    started = {}
    try:
        for kind in kinds:
            started[kind] = start_server(kind, port=free_port(), state_dir=state, durable=DURABLE)
        yield state, {kind: server_settings(kind, record)
                      for kind, record in started.items()}
    finally:
        for kind, record in started.items():
            stop_server(kind, record)
        shutil.rmtree(state, ignore_errors=True)


def micro(kind, *, stores_to_run, recorded, repeat, argument=None):
    """Run loadtest.bench.micro in a fresh process per store; record its readings into `recorded`."""
    table = registry.SESSION_STORES if kind == "sessions" else registry.PRESENCE_STORES
    # Counters live in Redis whatever the store: start it too.
    kinds = registry.servers_of(*(table[store] for store in stores_to_run), registry.presence_store("redis"))
    with _servers(kinds) as (state, settings):
        base_env = {
            **os.environ, **BENCH_ENV, "DJANGO_SETTINGS_MODULE": "labsite.settings", "SECRET_KEY": "bench",
            "STATE_DIR": str(state), "BENCH_REPEAT": str(repeat),
            **{name: value for kind in settings.values() for name, value in kind.items()},
        }
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=base_env, check=True)
        for store in stores_to_run:
            variable = "SESSION_STORE" if kind == "sessions" else "PRESENCE_STORE"
            # Filling a room of 10,000 takes seconds: nobody may expire meanwhile,
            # or the benchmark measures expiry instead of a heartbeat.
            env = {**base_env, variable: store, "PRESENCE_HEARTBEAT_INTERVAL": "300"}
            _record(recorded, [kind, *([argument] if argument else [])], env, f"{kind} benchmark of {store}")


def post_cost(databases, *, recorded, repeat):
    """Run loadtest.bench.micro posts on each database (sqlite, postgres), fresh ones; record its readings."""
    rows = [registry.database(name) for name in databases]
    with _servers(registry.servers_of(*rows)) as (state, settings):
        base_env = {**os.environ, **BENCH_ENV, "DJANGO_SETTINGS_MODULE": "labsite.settings", "SECRET_KEY": "bench",
                    "STATE_DIR": str(state), "BENCH_REPEAT": str(repeat)}
        base_env.pop("DATABASE_URL", None)
        for row in rows:
            env = dict(base_env)
            for kind in row.servers:
                env.update(settings[kind])
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            _record(recorded, ["posts"], env, f"post benchmark on {row.name}")


def _record(recorded, arguments, env, what):
    """loadtest.bench.micro with these arguments in a fresh process; each line it prints one sample."""
    done = subprocess.run([sys.executable, "-m", "loadtest.bench.micro", *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise DeployError(f"{what} failed: {done.stderr.strip()[-800:]}")
    for line in done.stdout.splitlines():
        recorded.sample(**json.loads(line))
