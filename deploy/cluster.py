"""A local cluster: the site's instances behind HAProxy, with the stores they need.

Everything lives under one state folder: `cluster.json` (what runs, where),
`haproxy.cfg`, the admin socket, and a log per process. These functions are
the deploy layer's public interface; the CLI and the load test call them.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy import haproxy, stores
from deploy.processes import (
    DeployError,
    alive,
    port_free,
    port_open,
    require,
    spawn,
    stop,
    wait_for,
)
from labsite.config import PRESENCE_STORES, SESSION_ENGINES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / "state" / "cluster"
MAX_INSTANCES = 16
LB_CHOICES = ("roundrobin", "sticky")
DB_CHOICES = ("sqlite", "postgres")

# Ports, as offsets from the load balancer's port.
STATS_OFFSET, REDIS_OFFSET, MEMCACHED_OFFSET, POSTGRES_OFFSET, INSTANCE_OFFSET = 1, 2, 3, 4, 10


@dataclass
class Cluster:
    state_dir: str
    port: int
    lb: str
    sessions: str
    presence: str
    db: str
    secret_key: str
    env: dict = field(default_factory=dict)  # extra settings for every instance
    instances: dict = field(default_factory=dict)  # name -> {"port", "pid"}
    stores: dict = field(default_factory=dict)  # name -> {"port", "pid"}
    haproxy_pid: int = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats_url(self):
        return f"http://127.0.0.1:{self.port + STATS_OFFSET}/"

    @property
    def path(self):
        return Path(self.state_dir)

    @property
    def runtime(self):
        return haproxy.Runtime(self.path / "haproxy.sock")

    def instance_port(self, name):
        return self.port + INSTANCE_OFFSET + int(name.removeprefix("app"))

    def save(self):
        target = self.path / "cluster.json"
        target.write_text(json.dumps(asdict(self), indent=2))
        target.chmod(0o600)

    def pids(self):
        return [self.haproxy_pid] + [p["pid"] for p in (*self.instances.values(), *self.stores.values())]


def load(state_dir=DEFAULT_STATE_DIR):
    """Return the cluster recorded in state_dir, or None."""
    try:
        return Cluster(**json.loads((Path(state_dir) / "cluster.json").read_text()))
    except FileNotFoundError:
        return None


def require_cluster(state_dir):
    cluster = load(state_dir)
    if cluster is None:
        raise DeployError("no cluster is up; start one with: python -m deploy up")
    return cluster


def needed_stores(sessions, presence, db):
    needed = []
    if sessions in ("redis", "cached_db") or presence == "redis":
        needed.append("redis")
    if sessions == "memcached":
        needed.append("memcached")
    if db == "postgres":
        needed.append("postgres")
    return needed


def up(*, instances=3, sessions="redis", presence="redis", lb="roundrobin", port=8000,
       db="sqlite", env=None, state_dir=DEFAULT_STATE_DIR):
    """Start a cluster and wait until it serves through the load balancer.

    env: extra environment variables (site settings) for every instance.
    """
    _check_choices(instances, sessions, presence, lb, db)
    previous = load(state_dir)
    if previous and any(alive(pid) for pid in previous.pids()):
        raise DeployError(f"a cluster is already up at {previous.url}; stop it with: python -m deploy down")
    require("haproxy", "haproxy")
    wanted = needed_stores(sessions, presence, db)
    _check_ports(port, wanted, instances)

    cluster = Cluster(
        # Absolute: HAProxy reads a relative socket path as host:port.
        state_dir=str(Path(state_dir).resolve()), port=port, lb=lb, sessions=sessions, presence=presence,
        db=db, secret_key=secrets.token_urlsafe(50), env=dict(env or {}),
    )
    (cluster.path / "logs").mkdir(parents=True, exist_ok=True)
    # Every cluster starts with empty databases, so runs compare fairly.
    for stale in ("site.sqlite3", "site.sqlite3-wal", "site.sqlite3-shm"):
        (cluster.path / stale).unlink(missing_ok=True)
    cluster.save()
    try:
        _start_stores(cluster, wanted)
        _migrate(cluster)
        for number in range(1, instances + 1):
            _start_instance(cluster, f"app{number}")
        _start_haproxy(cluster)
        _wait_serving(cluster)
    except BaseException:
        down(state_dir)
        raise
    return cluster


def down(state_dir=DEFAULT_STATE_DIR):
    """Stop everything `up` started; return the cluster that was up, or None."""
    cluster = load(state_dir)
    if cluster is None:
        return None
    stop(cluster.haproxy_pid, timeout=5)
    for instance in cluster.instances.values():
        stop(instance["pid"], timeout=5)
    for name, store in cluster.stores.items():
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
        stop(store["pid"], sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
        if "data" in store:
            shutil.rmtree(store["data"], ignore_errors=True)
    (cluster.path / "cluster.json").unlink(missing_ok=True)
    return cluster


def status(state_dir=DEFAULT_STATE_DIR):
    """Return what runs, as one JSON-ready dict."""
    cluster = require_cluster(state_dir)
    try:
        lb_rows = cluster.runtime.stats() if alive(cluster.haproxy_pid) else {}
    except OSError:
        lb_rows = {}
    return {
        "url": cluster.url,
        "stats_url": cluster.stats_url,
        "lb": cluster.lb,
        "sessions": cluster.sessions,
        "presence": cluster.presence,
        "db": cluster.db,
        "haproxy": {"pid": cluster.haproxy_pid, "alive": alive(cluster.haproxy_pid)},
        "stores": [
            {"name": name, "port": s["port"], "pid": s["pid"], "alive": alive(s["pid"])}
            for name, s in cluster.stores.items()
        ],
        "instances": [
            {
                "name": name,
                "port": i["port"],
                "pid": i["pid"],
                "alive": alive(i["pid"]),
                "lb_state": lb_rows[name]["status"] if name in lb_rows else "unknown",
            }
            for name, i in sorted(cluster.instances.items(), key=lambda kv: kv[1]["port"])
        ],
    }


def kill(name, *, graceful=False, state_dir=DEFAULT_STATE_DIR):
    """Crash an instance like a dead machine (SIGKILL to its process group).

    graceful: take it out of the load balancer first, wait for its requests
    to finish, then SIGTERM it, so no request fails.
    """
    cluster = require_cluster(state_dir)
    instance = _instance(cluster, name)
    if not alive(instance["pid"]):
        raise DeployError(f"{name} is not running")
    if graceful:
        _take_out(cluster, name)
        stop(instance["pid"], sig=signal.SIGTERM, timeout=15)
    else:
        stop(instance["pid"], sig=signal.SIGKILL)


def start(name, *, state_dir=DEFAULT_STATE_DIR):
    """Bring a stopped instance back into the load balancer."""
    cluster = require_cluster(state_dir)
    instance = _instance(cluster, name)
    if alive(instance["pid"]):
        raise DeployError(f"{name} is already running (pid {instance['pid']})")
    _start_instance(cluster, name)
    _bring_in(cluster, name)


def scale(count, *, state_dir=DEFAULT_STATE_DIR):
    """Add or remove instances, without a restart and without failed requests."""
    cluster = require_cluster(state_dir)
    if not 1 <= count <= MAX_INSTANCES:
        raise DeployError(f"scale to between 1 and {MAX_INSTANCES} instances, not {count}")
    current = len(cluster.instances)
    for number in range(current + 1, count + 1):
        name = f"app{number}"
        if not port_free(cluster.instance_port(name)):
            raise DeployError(f"port {cluster.instance_port(name)} for {name} is busy")
        _start_instance(cluster, name)
        _bring_in(cluster, name)
    for number in range(current, count, -1):
        name = f"app{number}"
        if alive(cluster.instances[name]["pid"]):
            _take_out(cluster, name)
            stop(cluster.instances[name]["pid"], sig=signal.SIGTERM, timeout=15)
        else:
            cluster.runtime.set_state(name, "maint")
        del cluster.instances[name]
        cluster.save()
    return cluster


def log_path(name, *, state_dir=DEFAULT_STATE_DIR):
    cluster = require_cluster(state_dir)
    known = {*cluster.instances, *cluster.stores, "haproxy"}
    if name not in known:
        raise DeployError(f"no log for {name!r}; choose one of: {', '.join(sorted(known))}")
    return cluster.path / "logs" / f"{name}.log"


# Inside


def _check_choices(instances, sessions, presence, lb, db):
    for value, choices, what in (
        (sessions, SESSION_ENGINES, "--sessions"),
        (presence, PRESENCE_STORES, "--presence"),
        (lb, LB_CHOICES, "--lb"),
        (db, DB_CHOICES, "--db"),
    ):
        if value not in choices:
            raise DeployError(f"{what} {value!r} is not one of: {', '.join(choices)}")
    if not 1 <= instances <= MAX_INSTANCES:
        raise DeployError(f"--instances must be between 1 and {MAX_INSTANCES}, not {instances}")


def _check_ports(port, wanted, instances):
    ports = {port: "load balancer", port + STATS_OFFSET: "HAProxy stats"}
    offsets = {"redis": REDIS_OFFSET, "memcached": MEMCACHED_OFFSET, "postgres": POSTGRES_OFFSET}
    ports.update({port + offsets[name]: name for name in wanted})
    ports.update({port + INSTANCE_OFFSET + n: f"app{n}" for n in range(1, instances + 1)})
    for number, what in ports.items():
        if not port_free(number):
            raise DeployError(
                f"port {number} ({what}) is busy; free it or choose another base with --port"
            )


def _start_stores(cluster, wanted):
    starters = {
        "redis": (stores.start_redis, REDIS_OFFSET),
        "memcached": (stores.start_memcached, MEMCACHED_OFFSET),
        "postgres": (stores.start_postgres, POSTGRES_OFFSET),
    }
    for name in wanted:
        start_store, offset = starters[name]
        port = cluster.port + offset
        cluster.stores[name] = start_store(port=port, state_dir=cluster.path)
        cluster.save()


def site_env(cluster, name=None):
    """The environment every instance of the cluster shares."""
    env = {
        **os.environ,
        "TRUSTED_PROXIES": haproxy.SOURCE_ADDRESS,
        **cluster.env,
        "DJANGO_SETTINGS_MODULE": "labsite.settings",
        "SECRET_KEY": cluster.secret_key,
        "SESSION_STORE": cluster.sessions,
        "PRESENCE_STORE": cluster.presence,
        "STATE_DIR": str(cluster.path),
        "DEBUG": "0",
    }
    env.pop("SESSION_ENGINE", None)
    if "redis" in cluster.stores:
        env["REDIS_URL"] = f"redis://127.0.0.1:{cluster.stores['redis']['port']}/0"
    if "memcached" in cluster.stores:
        env["MEMCACHED_URL"] = f"memcached://127.0.0.1:{cluster.stores['memcached']['port']}"
    if "postgres" in cluster.stores:
        env["DATABASE_URL"] = stores.postgres_url(cluster.stores["postgres"]["port"])
    else:
        env.pop("DATABASE_URL", None)
    if name:
        env["INSTANCE_NAME"] = name
    return env


def _migrate(cluster):
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=ROOT, env=site_env(cluster), capture_output=True, text=True, timeout=300,
    )
    if done.returncode:
        raise DeployError(f"migrate failed: {done.stderr.strip()[-500:]}")


def _start_instance(cluster, name):
    port = cluster.instance_port(name)
    argv = [
        sys.executable, "-m", "gunicorn", "labsite.wsgi",
        "--bind", f"127.0.0.1:{port}",
        # One process per instance: in memory mode the process is the unit
        # of state, so more workers would be more instances behind one port.
        "--workers", "1", "--threads", "8",
        "--graceful-timeout", "10",
        # Longer than HAProxy keeps an idle connection to an instance.
        "--keep-alive", "300",
        # Every instance would share gunicorn's one default control socket.
        "--no-control-socket",
    ]
    pid = spawn(argv, log_path=cluster.path / "logs" / f"{name}.log", env=site_env(cluster, name), cwd=ROOT)
    cluster.instances[name] = {"port": port, "pid": pid}
    cluster.save()
    wait_for(lambda: _healthy(port) or not alive(pid), timeout=30, what=f"{name} on port {port}")
    if not alive(pid):
        raise DeployError(f"{name} exited at start; see: python -m deploy logs {name}")


def _answers(url, timeout=1):
    """True if url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _healthy(port):
    return _answers(f"http://127.0.0.1:{port}/healthz")


def _start_haproxy(cluster):
    binary = require("haproxy", "haproxy")
    running = set(cluster.instances)
    slots = [(f"app{n}", cluster.instance_port(f"app{n}"), f"app{n}" in running)
             for n in range(1, MAX_INSTANCES + 1)]
    config = cluster.path / "haproxy.cfg"
    config.write_text(
        haproxy.render(
            port=cluster.port,
            stats_port=cluster.port + STATS_OFFSET,
            socket_path=cluster.path / "haproxy.sock",
            pidfile=cluster.path / "haproxy.pid",
            lb=cluster.lb,
            slots=slots,
        )
    )
    check = subprocess.run([binary, "-c", "-f", config], capture_output=True, text=True)
    if check.returncode:
        alerts = [line for line in check.stderr.splitlines() if "ALERT" in line]
        raise DeployError(f"haproxy rejected {config}: {alerts[0] if alerts else check.stderr.strip()}")
    cluster.haproxy_pid = spawn([binary, "-f", config], log_path=cluster.path / "logs" / "haproxy.log")
    cluster.save()
    wait_for(lambda: port_open(cluster.port) or not alive(cluster.haproxy_pid), timeout=10,
             what="haproxy")
    if not alive(cluster.haproxy_pid):
        raise DeployError("haproxy exited at start; see: python -m deploy logs haproxy")


def _wait_serving(cluster):
    def all_up():
        rows = cluster.runtime.stats()
        return all(rows[name]["status"] == "UP" for name in cluster.instances)

    wait_for(all_up, timeout=30, what="every instance to be UP in HAProxy")
    wait_for(lambda: _answers(f"{cluster.url}/readyz", timeout=2), timeout=30, what=f"{cluster.url}/readyz")




def _instance(cluster, name):
    if name not in cluster.instances:
        raise DeployError(f"no instance {name!r}; the cluster has: {', '.join(cluster.instances)}")
    return cluster.instances[name]


def _take_out(cluster, name):
    """Stop sending requests to an instance and wait for its last ones.

    Not HAProxy's `drain`: a drained server still gets every client whose
    sticky cookie names it. `maint` sends those elsewhere too.
    """
    cluster.runtime.set_state(name, "maint")
    wait_for(lambda: cluster.runtime.stats()[name]["scur"] == "0", timeout=15,
             what=f"{name}'s requests in flight to finish")


def _bring_in(cluster, name):
    cluster.runtime.set_state(name, "ready")
    wait_for(lambda: cluster.runtime.stats()[name]["status"] == "UP", timeout=15,
             what=f"{name} to be UP in HAProxy")
