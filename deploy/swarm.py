"""The cluster on Docker Swarm: up, status, kill, start, logs and down for a record whose runtime is "swarm".

The record (deploy/record.py) is the same as for processes: `instances`
holds the slots app1..appN (port 8000 inside the stack), `stores` the
passwords of redis and postgres, `stack` the stack's name; no pid, since
Swarm owns the containers. An instance is the task of service `app` with
its slot: `kill app2` sends SIGKILL to that task's container, Swarm starts
a new task in the same slot (a new container, empty memory), and `start
app2` waits until that replacement serves.
"""

import csv
import io
import ipaddress
import json
import secrets
import urllib.request
from functools import partial
from pathlib import Path

from deploy import engine, netns, stack
from deploy.engine import docker
from deploy.errors import DeployError
from deploy.kinds.base import new_password
from deploy.layout import STATS_OFFSET
from deploy.processes import port_free, run_all, wait_for
from deploy.record import Cluster, load, make_private_folder, remove_private_files

SERVICES = ("haproxy", "redis", "postgres")  # the store and balancer services `kill`, `start` and `logs` know
MIGRATE_ATTEMPTS = 30
TIMEOUT = 300  # generous: two busy cores pull no image but start a dozen containers


def up(cluster, *, instances, servers):
    """Start the stack for a saved record and wait until it serves; the caller tears down on failure."""
    engine.ensure(swarm=True)
    missing = [image for image in (stack.BASE_IMAGE, stack.SITE_IMAGE)
               if docker("image", "inspect", image, check=False).returncode]
    if missing:
        raise DeployError(f"no image {', '.join(missing)} here; build them with: python -m deploy images")
    cluster.stores = {kind: {"kind": kind, "port": port, "password": new_password()}
                      for kind, port in (("redis", stack.REDIS_PORT), ("postgres", stack.PG_PORT))
                      if kind in servers}
    cluster.instances = {f"app{n}": {"port": stack.APP_PORT, "slot": n} for n in range(1, instances + 1)}
    cluster.save()
    path = stack.write(cluster, instances=instances)
    docker("stack", "deploy", "--prune", "--resolve-image", "never", "-c", path.name, cluster.stack,
           cwd=cluster.path)
    wait_for(lambda: _migrated(cluster), timeout=TIMEOUT, interval=1, what="the migrate task to complete")
    wait_serving(cluster)


def _migrated(cluster):
    found = tasks(cluster, "migrate")
    states = [task["Status"]["State"] for task in found]
    # It fails while PostgreSQL's task is still starting; Swarm runs it again. Many failures are something else.
    if states.count("failed") >= MIGRATE_ATTEMPTS:
        raise DeployError(f"migrate failed {states.count('failed')} times: "
                          f"{logs(cluster, 'migrate', 5, task=found[0]).strip()[-800:]}")
    return "complete" in states


def wait_serving(cluster, names=None):
    """Wait until every instance (or those named) runs and HAProxy has each one UP, then for /readyz."""
    def all_up():
        rows = {row["name"]: row for row in instance_rows(cluster)}
        return all(rows[name]["alive"] and rows[name]["lb_state"] == "UP" for name in names or rows)

    wait_for(all_up, timeout=TIMEOUT, interval=1, what="every instance's task to run and be UP in HAProxy")
    wait_for(lambda: _answers(f"{cluster.url}/readyz"), timeout=60, interval=0.5, what=f"{cluster.url}/readyz")


def _answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def tasks(cluster, service):
    """Docker's task objects of one service of the stack, newest first (docker inspect's JSON)."""
    ids = docker("service", "ps", "-q", "--no-trunc", f"{cluster.stack}_{service}", check=False).stdout.split()
    if not ids:
        return []
    # A task Swarm removed since `ps` is missing from the answer (and the exit code says so): the rest stands.
    found = json.loads(docker("inspect", *ids, check=False).stdout or "[]")
    return sorted(found, key=lambda task: task["CreatedAt"], reverse=True)


def lb_rows(cluster):
    """HAProxy's view of the instances, {address: status}, from its stats page (empty if it does not answer)."""
    try:
        with urllib.request.urlopen(f"{cluster.stats_url};csv", timeout=2) as response:
            text = response.read().decode().lstrip("# ")
    except OSError:
        return {}
    return {row["addr"].rsplit(":", 1)[0]: row["status"] for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "instances" and row["svname"] not in ("BACKEND", "FRONTEND") and row.get("addr")}


def row(name, task, lb, port):
    """One status row for the task in a slot (None: no task there yet), with HAProxy's rows by address."""
    state = task["Status"]["State"] if task else "none"
    address = _address(task)
    alive = state == "running"
    lb_state = lb.get(address, "unknown") if address else "unknown"
    return {
        "name": name,
        "host": address,
        "port": port,
        "pid": None,
        "alive": alive,
        "lb_state": lb_state,
        "state": "up" if alive else "down",
        "role": None,
        "container": (task["Status"].get("ContainerStatus") or {}).get("ContainerID", "")[:12] if task else None,
        "started": task["Status"]["Timestamp"] if alive else None,
    }


def _address(task):
    for attachment in (task or {}).get("NetworksAttachments") or []:
        for address in attachment.get("Addresses") or []:
            host = address.split("/")[0]
            if ipaddress.ip_address(host) in stack.STACK_SUBNET:
                return host
    return None


def _current(found, slot=None):
    """The task now meant to run (in a slot): the newest whose desired state is running."""
    wanted = [task for task in found if slot is None or task.get("Slot") == slot]
    return next((task for task in wanted if task["DesiredState"] == "running"), wanted[0] if wanted else None)


def instance_rows(cluster):
    found, lb = tasks(cluster, "app"), lb_rows(cluster)
    return [row(name, _current(found, record["slot"]), lb, record["port"])
            for name, record in sorted(cluster.instances.items(), key=lambda kv: kv[1]["slot"])]


def status(cluster):
    """status --json for a swarm cluster: the processes' schema, `pid` null, `container` and `started` added."""
    service_rows = {name: row(name, _current(tasks(cluster, name)), {}, port)
                    for name, port in (("haproxy", cluster.port), *((n, s["port"]) for n, s in cluster.stores.items()))}
    haproxy = service_rows.pop("haproxy")
    return {
        "url": cluster.url, "stats_url": cluster.stats_url, "lb": cluster.lb, "sessions": cluster.sessions,
        "presence": cluster.presence, "db": cluster.db, "durable": cluster.durable,
        "runtime": cluster.runs_on, "stack": cluster.stack,
        "haproxy": {key: haproxy[key] for key in ("pid", "alive", "container", "started")},
        "topology": cluster.topology, "network": str(stack.STACK_SUBNET), "partitions": [], "cpu": {},
        "stores": [{key: r[key] for key in ("name", "host", "port", "pid", "alive", "state", "container", "started")}
                   | {"kind": name, "socket": None, "role": "primary" if r["alive"] else "down"}
                   for name, r in service_rows.items()],
        "instances": instance_rows(cluster),
    }


def _task_of(cluster, name):
    """The running task of an instance (app1..) or of a service (haproxy, redis, postgres)."""
    if name in cluster.instances:
        task = _current(tasks(cluster, "app"), cluster.instances[name]["slot"])
    elif name in SERVICES and (name == "haproxy" or name in cluster.stores):
        task = _current(tasks(cluster, name))
    else:
        known = [*cluster.instances, "haproxy", *cluster.stores]
        raise DeployError(f"no instance or service {name!r}; choose one of: {', '.join(known)}")
    return task


def kill(cluster, name):
    """SIGKILL the container of an instance's (or a service's) task, as a dead machine; Swarm replaces it."""
    task = _task_of(cluster, name)
    if not task or task["Status"]["State"] != "running":
        raise DeployError(f"{name} is not running (Swarm is starting its replacement: python -m deploy start "
                          f"{name} waits for it)")
    docker("kill", "--signal", "KILL", task["Status"]["ContainerStatus"]["ContainerID"])
    return name


def start(cluster, name):
    """Wait until Swarm's task in the slot runs again (and, for an instance, HAProxy has it UP)."""
    _task_of(cluster, name)
    if name in cluster.instances:
        wait_serving(cluster, [name])
    else:
        wait_for(lambda: (_current(tasks(cluster, name)) or {}).get("Status", {}).get("State") == "running",
                 timeout=TIMEOUT, interval=1, what=f"{name}'s task to run")
    return name


def logs(cluster, name, lines, *, task=None):
    """The last lines of the current task's container of an instance or a service (or of `task`)."""
    task = task or _task_of(cluster, name)
    container = ((task or {}).get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
    if not container:
        return ""
    done = docker("logs", "--tail", str(lines), container, check=False)
    return done.stdout + done.stderr


def manage(cluster, *argv, stdin=None):
    """Run a management command in a running instance's container (the database is inside the stack's network);
    return what it printed."""
    running_tasks = [task for task in tasks(cluster, "app") if task["Status"]["State"] == "running"]
    if not running_tasks:
        raise DeployError("no instance's task runs, so no management command can run")
    done = docker("exec", "-i", running_tasks[0]["Status"]["ContainerStatus"]["ContainerID"],
                  "python", "-m", "django", *argv, input=stdin, check=False, timeout=300)
    if done.returncode:
        raise DeployError(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def down(cluster):
    """Remove the stack and wait until its containers and network are gone."""
    if not engine.answering():
        return
    docker("stack", "rm", cluster.stack, check=False)
    label = f"label=com.docker.stack.namespace={cluster.stack}"
    wait_for(lambda: not docker("ps", "-aq", "--filter", label).stdout.split()
             and not docker("network", "ls", "-q", "--filter", label).stdout.split(),
             timeout=TIMEOUT, interval=1, what=f"stack {cluster.stack}'s containers and network to go")
    for config in docker("config", "ls", "-q", "--filter", label, check=False).stdout.split():
        docker("config", "rm", config, check=False)


def start_cluster(*, state_dir, instances, sessions, presence, lb, port, db, env, server, durable, topology,
                  **host_only):
    """`up --runtime swarm`: check every option first (stack.check), then record the cluster and deploy its
    stack; on any failure, `down` removes what was made. Return the record."""
    servers = stack.check(instances=instances, sessions=sessions, presence=presence, db=db, server=server,
                          topology=topology, **host_only)
    previous = load(state_dir)
    if previous:
        raise DeployError(f"a cluster is recorded in {state_dir} ({previous.url}); stop it with: python -m deploy "
                          "down")
    for number, what in ((port, "HAProxy"), (port + STATS_OFFSET, "HAProxy's stats")):
        if not port_free(number):
            raise DeployError(f"port {number} ({what}) is busy; free it or choose another base with --port")
    path = Path(state_dir).resolve()
    cluster = Cluster(
        state_dir=str(path), port=port, lb=lb, sessions=sessions, presence=presence, db=db,
        secret_key=secrets.token_urlsafe(50), proxy_secret=secrets.token_urlsafe(32), server=server,
        durable=durable, env=dict(env or {}), topology=topology.record(), runs_on="swarm",
        stack=netns.prefix_for(path),
    )
    make_private_folder(cluster.path)
    cluster.save()
    try:
        up(cluster, instances=instances, servers=servers)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster):
    """`down` for a swarm cluster: the stack, then the engine if the lab started it and no stack of it is left."""
    run_all([partial(down, cluster), release_engine])
    remove_private_files(cluster.path)


def release_engine():
    """engine.release(), unless a stack still runs on the engine (another state folder's cluster)."""
    if not engine.load():  # the lab changed nothing in Docker here: nothing to ask it
        return False
    if engine.answering() and docker("stack", "ls", "--format", "{{.Name}}", check=False).stdout.split():
        return False
    return engine.release()
