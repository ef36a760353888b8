"""A local cluster: the site's instances behind HAProxy, with the stores they need.

Everything lives under one state folder: `cluster.json` (what runs, where),
`haproxy.cfg`, the admin socket, and a log per process. deploy makes the
folder and marks it (deploy/layout.py); `down` empties it but for the logs.
These functions are the deploy layer's public interface; the CLI and the
load test call them.
"""

import json
import secrets
import signal
import subprocess
import sys
import urllib.request
from functools import partial
from pathlib import Path

from deploy import cgroups, haproxy, layout, netns, replication, sizing, stores, web
from deploy.layout import DEFAULT_STATE_DIR, MAX_INSTANCES, ROOT, STATS_OFFSET, Cluster, load, site_env
from deploy.processes import (
    PRIVATE_UMASK,
    DeployError,
    port_free,
    port_open,
    require,
    run_all,
    running,
    signal_group,
    spawn,
    stop,
    wait_for,
    write_private,
)
from labcore import registry

LB_CHOICES = ("roundrobin", "sticky")
# The store layouts `up` takes, and how long Sentinel may take to notice a dead
# primary and promote a replica: part of this interface for the experiments.
Topology = replication.Topology
SENTINEL_FAILOVER_SECONDS = (replication.DOWN_AFTER_MS + replication.FAILOVER_TIMEOUT_MS) / 1000


def require_cluster(state_dir):
    cluster = load(state_dir)
    if cluster is None:
        raise DeployError("no cluster is up; start one with: python -m deploy up")
    return cluster


def up(*, instances=3, sessions="redis", presence="redis", lb="roundrobin", port=8000,
       db="sqlite", env=None, server=web.DEFAULT, durable=True, topology=None, namespaces=False,
       cpu_quota=None, site_cpus=None,
       state_dir=DEFAULT_STATE_DIR):
    """Start a cluster and wait until it serves through the load balancer.

    env: extra environment variables (site settings) for every instance.
    server: how each instance is served (deploy/web.py).
    durable: False lets the databases lose acknowledged writes on an OS
    crash (PostgreSQL without fsync, SQLite synchronous=NORMAL), for benchmarks.
    topology: a deploy.replication.Topology (default: every store alone).
    namespaces: every store node and instance in a network namespace of its
    own, with an address of its own (deploy/netns.py), so that `partition`
    can cut them apart; HAProxy stays on loopback.
    cpu_quota, site_cpus: cores per instance, and the CPUs the instances run
    on, HAProxy and the stores getting the others (cgroups, deploy/cgroups.py).
    """
    _check_choices(instances, lb)
    web.argv(server, port=port)  # a bad choice fails here, before anything starts
    topology = (topology or replication.Topology()).check()
    wanted = servers_for(sessions=sessions, presence=presence, db=db)
    needs = sizing.db_connections(web.concurrency(server))
    if "postgres" in wanted and needs > sizing.DB_CONNECTIONS_PER_INSTANCE:
        raise DeployError(
            f"--server {server} may hold {needs} database connections per instance; PostgreSQL is sized for "
            f"{sizing.DB_CONNECTIONS_PER_INSTANCE} ({sizing.MAX_INSTANCES} instances, max_connections "
            f"{sizing.POSTGRES_MAX_CONNECTIONS}): choose gthread:{sizing.THREADS} or fewer threads")
    previous = load(state_dir)
    if previous and any(running(record) for record in previous.processes()):
        raise DeployError(f"a cluster is already up at {previous.url}; stop it with: python -m deploy down")
    require("haproxy", "haproxy")
    _check_ports(layout.ports(port, instances=instances, servers=wanted, topology=topology))
    if namespaces and (reason := netns.available()):
        raise DeployError(reason)
    if namespaces and topology.redis == "cluster" and "redis" in wanted:
        raise DeployError("--netns does not place Redis Cluster nodes in namespaces; "
                          "use --redis single or sentinel with it")
    limits = cgroups.Limits.plan(port=port, quota=cpu_quota, site_cpus=site_cpus)

    cluster = Cluster(
        # Absolute: HAProxy reads a relative socket path as host:port.
        state_dir=str(Path(state_dir).resolve()), port=port, lb=lb, sessions=sessions, presence=presence,
        db=db, secret_key=secrets.token_urlsafe(50), proxy_secret=secrets.token_urlsafe(32), server=server,
        durable=durable, env=dict(env or {}), topology=topology.record(), cpu=limits.record() if limits else {},
    )
    layout.make_private_folder(cluster.path)
    # Every cluster starts with empty databases, so runs compare fairly.
    for stale in ("site.sqlite3", "site.sqlite3-wal", "site.sqlite3-shm"):
        (cluster.path / stale).unlink(missing_ok=True)
    cluster.save()
    try:
        if namespaces:
            _make_network(cluster, wanted, topology)
        if limits:
            cgroups.Groups(limits).create()
        _start_stores(cluster, wanted)
        for node in cluster.stores.values():
            _confine(cluster, node["pid"], cgroups.REST)
        _migrate(cluster)
        for number in range(1, instances + 1):
            _start_instance(cluster, f"app{number}")
        _start_haproxy(cluster)
        _wait_serving(cluster)
    except BaseException:
        down(state_dir)
        raise
    return cluster


def servers_for(*, sessions, presence, db):
    """The kinds of server a cluster of this configuration starts; DeployError for an unknown store."""
    for value, table, what in (
        (sessions, registry.SESSION_STORES, "--sessions"),
        (presence, registry.PRESENCE_STORES, "--presence"),
        (db, registry.DATABASES, "--db"),
    ):
        if value not in table:
            raise DeployError(f"{what} {value!r} is not one of: {', '.join(table)}")
    needed = registry.servers_needed(sessions=sessions, presence=presence, database_name=db)
    missing = [kind for kind in needed if kind not in stores.KINDS]
    if missing:
        raise DeployError(f"deploy cannot start {', '.join(missing)} servers yet, which {sessions!r} needs; "
                          f"it starts: {', '.join(stores.KINDS)}")
    return needed


def down(state_dir=DEFAULT_STATE_DIR):
    """Stop everything `up` started and remove what holds a secret or user data; return the cluster, or None.

    Every step runs even when one before it fails (the first failure is
    raised at the end, the others noted on it), and the files go only when
    all succeeded, the record last, so `down` can be run again. The logs
    stay. A record in a folder deploy did not make is not acted on: the
    data folders it names could be anybody's.
    """
    cluster = load(state_dir)
    if cluster is None:
        cleanup(state_dir)  # namespaces a lost record left behind
        return None
    if not layout.made_by_deploy(cluster.path):
        raise DeployError(f"{cluster.path} was not made by deploy (no {layout.MARKER} in it): "
                          "nothing stopped or removed")
    run_all([
        partial(stop, cluster.haproxy, timeout=5),
        *(partial(stop, instance, timeout=5) for instance in cluster.instances.values()),
        partial(replication.stop_all, cluster),
        partial(cleanup, state_dir),
        *([lambda: cgroups.Groups(cluster.cpu).remove()] if cluster.cpu else []),
    ])
    layout.remove_private_files(cluster.path)
    return cluster


def cleanup(state_dir=DEFAULT_STATE_DIR, *, everything=False):
    """Remove the namespaces, links and partition rules of the cluster in state_dir, record or not.

    everything: of every cluster this project made on this machine. Return how many namespaces.
    """
    if everything:
        return netns.destroy_all()
    return netns.destroy(netns.prefix_for(Path(state_dir).resolve()))


def status(state_dir=DEFAULT_STATE_DIR):
    """Return what runs, as one JSON-ready dict."""
    cluster = require_cluster(state_dir)
    try:
        lb_rows = cluster.runtime.stats() if running(cluster.haproxy) else {}
    except OSError:
        lb_rows = {}
    return {
        "url": cluster.url,
        "stats_url": cluster.stats_url,
        "lb": cluster.lb,
        "sessions": cluster.sessions,
        "presence": cluster.presence,
        "db": cluster.db,
        "durable": cluster.durable,
        "haproxy": {"pid": cluster.haproxy.get("pid"), "alive": running(cluster.haproxy)},
        "topology": cluster.topology,
        "network": cluster.net.subnet if cluster.network else None,
        "partitions": cluster.partitions,
        "cpu": cluster.cpu,
        "stores": replication.rows(cluster),
        "instances": [
            {
                "name": name,
                "host": cluster.host(name),
                "port": i["port"],
                "pid": i["pid"],
                "alive": running(i),
                "lb_state": lb_rows[name]["status"] if name in lb_rows else "unknown",
            }
            for name, i in sorted(cluster.instances.items(), key=lambda kv: kv[1]["port"])
        ],
    }


def kill(name, *, graceful=False, state_dir=DEFAULT_STATE_DIR):
    """Crash an instance, or a store node, like a dead machine (SIGKILL to its process group).

    graceful: take it out of the load balancer first, wait for its requests
    to finish, then SIGTERM it, so no request fails.
    """
    cluster = require_cluster(state_dir)
    node = _store_node(cluster, name)
    if node:
        if graceful:
            raise DeployError(f"--signal TERM is for instances; {node} is a store node")
        replication.kill(cluster, node)
        return node
    instance = _instance(cluster, name)
    if not running(instance):
        raise DeployError(f"{name} is not running")
    if graceful:
        _take_out(cluster, name)
        stop(instance, sig=signal.SIGTERM, timeout=15)
    else:
        stop(instance, sig=signal.SIGKILL)


def start(name, *, state_dir=DEFAULT_STATE_DIR):
    """Bring a stopped instance back into the load balancer, or a store node back into its topology."""
    cluster = require_cluster(state_dir)
    node = _store_node(cluster, name)
    if node:
        replication.start(cluster, node)
        _confine(cluster, cluster.stores[node]["pid"], cgroups.REST)
        return node
    instance = _instance(cluster, name)
    if running(instance):
        raise DeployError(f"{name} is already running (pid {instance['pid']})")
    _start_instance(cluster, name)
    _bring_in(cluster, name)


def pause(name, *, resume=False, state_dir=DEFAULT_STATE_DIR):
    """Freeze an instance or a store node (SIGSTOP): it keeps its connections and answers nothing.

    resume: SIGCONT, and it carries on where it stopped.
    """
    cluster = require_cluster(state_dir)
    node = _store_node(cluster, name)
    if node:
        replication.pause(cluster, node, resume=resume)
        return node
    instance = _instance(cluster, name)
    if not running(instance):
        raise DeployError(f"{name} is not running")
    signal_group(instance["pid"], signal.SIGCONT if resume else signal.SIGSTOP)
    return name


def partition(isolated, others=(), *, state_dir=DEFAULT_STATE_DIR):
    """Cut the nodes or instances `isolated` off from `others` (from everything else if empty), silently.

    Names are resolved now (`redis:primary` is whichever node is primary at
    this moment). Partitions add up until `heal`. Return the partition as
    recorded: {"isolated": [...], "from": [...]}.
    """
    cluster = require_cluster(state_dir)
    network = cluster.net
    if network is None:
        raise DeployError("this cluster runs on loopback; partitions need: python -m deploy up --netns")
    isolated, others = [_node_name(cluster, n) for n in isolated], [_node_name(cluster, n) for n in others]
    if not isolated:
        raise DeployError("name at least one node or instance to cut off")
    made = {"isolated": isolated, "from": others}
    # Recorded before the rules exist: a failure half-way leaves nothing that `heal` does not know of.
    cluster.partitions.append(made)
    cluster.save()
    try:
        netns.partition(network, isolated, others)
    except BaseException:
        # Undo the rules it made so far: the earlier partitions stand, this one never happened.
        netns.heal(network)
        cluster.partitions.pop()
        cluster.save()
        for earlier in cluster.partitions:
            netns.partition(network, earlier["isolated"], earlier["from"])
        raise
    return made


def heal(*, state_dir=DEFAULT_STATE_DIR):
    """Remove every partition; return how many there were."""
    cluster = require_cluster(state_dir)
    if cluster.net:
        netns.heal(cluster.net)
    count = len(cluster.partitions)
    cluster.partitions = []
    cluster.save()
    return count


def _node_name(cluster, name):
    resolved = replication.resolve(cluster, name.strip())
    if resolved not in cluster.net.nodes:
        raise DeployError(f"no node or instance named {name!r}; the cluster has: "
                          f"{', '.join([*cluster.stores, *cluster.instances])}")
    return resolved


def promote(*, force=False, state_dir=DEFAULT_STATE_DIR):
    """Promote the PostgreSQL standby that received the most WAL; return its name.

    force: even while the old primary still runs (behind a partition, say).
    """
    return replication.promote(require_cluster(state_dir), force=force)


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
        if running(cluster.instances[name]):
            _take_out(cluster, name)
            stop(cluster.instances[name], sig=signal.SIGTERM, timeout=15)
        else:
            cluster.runtime.set_state(name, "maint")
        del cluster.instances[name]
        cluster.save()
    return cluster


def cpu_throttled(*, state_dir=DEFAULT_STATE_DIR):
    """For a cluster with --cpu-quota: how often and how long each instance's quota held it back so far."""
    cluster = require_cluster(state_dir)
    if not (cluster.cpu and cluster.cpu.get("quota")):
        return {}
    groups = cgroups.Groups(cluster.cpu)
    return {name: groups.throttled(name) for name in cluster.instances}


def add_users(usernames, password, *, state_dir=DEFAULT_STATE_DIR):
    """Create users (all with one password) straight in the cluster's database; existing ones stay as they are.

    For the load test, whose users all come from this machine: signed up
    over HTTP they would meet the site's per-address sign-up limit, as
    anyone would. This path needs the cluster's state folder (its database
    credentials), so it is no door for other processes.
    """
    _manage(require_cluster(state_dir), "add_users",
            stdin=json.dumps({"usernames": list(usernames), "password": password}))


def api_token(username, *, state_dir=DEFAULT_STATE_DIR):
    """A bearer token for `username`, made without a usable password if it does not exist.

    For the load test's audit: it reads through the API without ever
    logging in, so no login throttle can refuse it. Needs the cluster's
    state folder (its SECRET_KEY), like add_users.
    """
    return _manage(require_cluster(state_dir), "api_token", username).strip()


def log_path(name, *, state_dir=DEFAULT_STATE_DIR):
    cluster = require_cluster(state_dir)
    known = {*cluster.instances, *cluster.stores, "haproxy"}
    if name not in known:
        raise DeployError(f"no log for {name!r}; choose one of: {', '.join(sorted(known))}")
    return cluster.path / "logs" / f"{name}.log"


# Inside


def _check_choices(instances, lb):
    if lb not in LB_CHOICES:
        raise DeployError(f"--lb {lb!r} is not one of: {', '.join(LB_CHOICES)}")
    if not 1 <= instances <= MAX_INSTANCES:
        raise DeployError(f"--instances must be between 1 and {MAX_INSTANCES}, not {instances}")


def _check_ports(wanted):
    for number, what in wanted.items():
        if not port_free(number):
            raise DeployError(
                f"port {number} ({what}) is busy; free it or choose another base with --port"
            )


def _make_network(cluster, wanted, topology):
    """A namespace per store node with a port (memcached has a UNIX socket) and per instance slot."""
    planned = replication.nodes(wanted, topology, lambda kind, index: layout.store_port(cluster.port, kind, index))
    names = [name for name, kind, _ in planned if kind != "memcached"]
    names += [f"app{n}" for n in range(1, MAX_INSTANCES + 1)]  # every slot: `scale` and HAProxy's config need them
    prefix = netns.prefix_for(cluster.path)
    netns.destroy(prefix)  # what a crashed run of this state folder left
    cluster.network = netns.create(prefix, netns.free_net_number(), names).record()
    cluster.save()


def _start_stores(cluster, wanted):
    replication.start_all(cluster, wanted, lambda kind, index: layout.store_port(cluster.port, kind, index))


def _migrate(cluster):
    _manage(cluster, "migrate", "--no-input", "-v0")


def _manage(cluster, *argv, stdin=None):
    """Run a `manage.py` command with the cluster's settings; return what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT, env=site_env(cluster), input=stdin, capture_output=True, text=True, timeout=300,
        umask=PRIVATE_UMASK,
    )
    if done.returncode:
        raise DeployError(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _start_instance(cluster, name):
    port, host = cluster.instance_port(name), cluster.host(name)
    argv = cluster.command(name, web.argv(cluster.server, port=port, host=host))
    record = spawn(argv, log_path=cluster.path / "logs" / f"{name}.log", env=site_env(cluster, name), cwd=ROOT)
    cluster.instances[name] = {"port": port, **record}
    cluster.save()
    wait_for(lambda: _healthy(cluster.instance_url(name)) or not running(record), timeout=30,
             what=f"{name} on {host}:{port}")
    if not running(record):
        raise DeployError(f"{name} exited at start; see: python -m deploy logs {name}")
    _confine(cluster, record["pid"], name)


def _confine(cluster, pid, group):
    """Move a process group into its cgroup, when the cluster has CPU limits."""
    if cluster.cpu:
        cgroups.Groups(cluster.cpu).join(pid, group)


def _answers(url, timeout=1):
    """True if url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _healthy(instance_url):
    return _answers(f"{instance_url}/healthz")


def _start_haproxy(cluster):
    binary = require("haproxy", "haproxy")
    up_now = set(cluster.instances)
    slots = [(f"app{n}", cluster.host(f"app{n}"), cluster.instance_port(f"app{n}"), f"app{n}" in up_now)
             for n in range(1, MAX_INSTANCES + 1)]
    config = cluster.path / "haproxy.cfg"
    write_private(
        config,
        haproxy.render(
            port=cluster.port,
            stats_port=cluster.port + STATS_OFFSET,
            socket_path=cluster.path / "haproxy.sock",
            pidfile=cluster.path / "haproxy.pid",
            lb=cluster.lb,
            slots=slots,
            source=cluster.proxy_source,
        )
    )
    env = haproxy.environment(cluster.proxy_secret)
    check = subprocess.run([binary, "-c", "-f", config], capture_output=True, text=True, env=env)
    if check.returncode:
        alerts = [line for line in check.stderr.splitlines() if "ALERT" in line]
        raise DeployError(f"haproxy rejected {config}: {alerts[0] if alerts else check.stderr.strip()}")
    cluster.haproxy = spawn([binary, "-f", config], log_path=cluster.path / "logs" / "haproxy.log", env=env)
    cluster.save()
    _confine(cluster, cluster.haproxy["pid"], cgroups.REST)
    wait_for(lambda: port_open(cluster.port) or not running(cluster.haproxy), timeout=10,
             what="haproxy")
    if not running(cluster.haproxy):
        raise DeployError("haproxy exited at start; see: python -m deploy logs haproxy")


def _wait_serving(cluster):
    def all_up():
        try:
            rows = cluster.runtime.stats()
        except OSError:  # HAProxy opens its admin socket a moment after its port
            return False
        return all(rows[name]["status"] == "UP" for name in cluster.instances)

    wait_for(all_up, timeout=30, what="every instance to be UP in HAProxy")
    wait_for(lambda: _answers(f"{cluster.url}/readyz", timeout=2), timeout=30, what=f"{cluster.url}/readyz")




def _store_node(cluster, name):
    """The store node `name` means (resolving redis:primary, pg:primary, etcd:leader), or None for an instance."""
    node = replication.resolve(cluster, name)
    return node if node in cluster.stores else None


def _instance(cluster, name):
    if name not in cluster.instances:
        raise DeployError(f"no instance or store node {name!r}; the cluster has: "
                          f"{', '.join([*cluster.instances, *cluster.stores])}")
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
