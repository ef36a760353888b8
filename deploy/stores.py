"""The kinds of store server a configuration can need, each a private process on loopback.

One row per kind in KINDS: how to start it, how to stop it, and the setting
that points the site at it. Which kinds a configuration needs is the
registry's answer (labcore/registry.py).

Redis runs without persistence: like a cache node that dies, a restarted
Redis comes back empty. That is the store's own failure mode the lab shows.
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.processes import DeployError, port_open, require, spawn, wait_for


def start_redis(*, port, state_dir, name="redis", args=()):
    """Start a Redis node; args: more options, e.g. --replicaof (deploy/replication.py)."""
    binary = require("redis-server", "redis-server")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(state_dir), *args]
    return _start(name, argv, port, state_dir)


def start_memcached(*, port, state_dir):
    binary = require("memcached", "memcached")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", *user]
    return _start("memcached", argv, port, state_dir)


def start_postgres(*, port, state_dir, name="postgres", config=""):
    """Start a fresh private PostgreSQL cluster, user `lab`, trust authentication on loopback.

    PostgreSQL refuses to run as root, so as root
    it runs as `postgres`, with its data in a folder of its own under
    /var/tmp: the state folder's parents may be closed to other users.
    config: lines for postgresql.conf (replication settings, which ALTER
    SYSTEM may change later: a -c option would override it).
    """
    data, user = postgres_data_folder(state_dir, name)
    done = subprocess.run(
        [postgres_bin("initdb"), "-D", data, "-U", "lab", "--auth=trust", "--no-sync"],
        capture_output=True, text=True, timeout=120, user=user,
    )
    if done.returncode:
        raise DeployError(f"initdb failed: {done.stderr.strip().splitlines()[-1]}")
    if config:
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(config)
    return run_postgres(data, port=port, state_dir=state_dir, name=name)


def postgres_bin(program):
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise DeployError("PostgreSQL is not installed; install it with: apt-get install -y postgresql")
    return Path(initdb[-1]).parent / program


def postgres_user():
    return "postgres" if os.geteuid() == 0 else None


def postgres_data_folder(state_dir, name):
    """A new, empty data folder owned by the user PostgreSQL runs as; return (folder, user)."""
    user = postgres_user()
    if user:
        data = Path(tempfile.mkdtemp(prefix=f"stateful-lab-{name}-", dir="/var/tmp"))
        shutil.chown(data, user)
        data.chmod(0o700)
    else:
        data = Path(state_dir) / name
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, mode=0o700)
    return data, user


def run_postgres(data, *, port, state_dir, name="postgres"):
    """Start postgres on an existing data folder; return its record."""
    argv = [postgres_bin("postgres"), "-D", data, "-p", str(port), "-k", data,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    return {**_start(name, argv, port, state_dir, user=postgres_user()), "data": str(data)}


def postgres_url(port):
    return f"postgres://lab@127.0.0.1:{port}/postgres"


def _start(name, argv, port, state_dir, user=None):
    """Start a store; return its record: port, pid (and data folder, if any)."""
    (Path(state_dir) / "logs").mkdir(parents=True, exist_ok=True)
    pid = spawn(argv, log_path=Path(state_dir) / "logs" / f"{name}.log", user=user)
    wait_for(lambda: port_open(port), timeout=30, what=f"{name} on port {port}")
    return {"port": port, "pid": pid}


@dataclass(frozen=True)
class Kind:
    start: Callable  # (port, state_dir) -> record: {"port", "pid"} and maybe "data"
    variable: str  # the site setting that points at it
    url: Callable  # record -> that setting's value
    stop_signal: int = signal.SIGTERM


KINDS = {
    "redis": Kind(start_redis, "REDIS_URL", lambda record: f"redis://127.0.0.1:{record['port']}/0"),
    "memcached": Kind(start_memcached, "MEMCACHED_URL", lambda record: f"memcached://127.0.0.1:{record['port']}"),
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
    "postgres": Kind(start_postgres, "DATABASE_URL", lambda record: postgres_url(record["port"]),
                     stop_signal=signal.SIGINT),
}
