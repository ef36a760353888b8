"""A local cluster: the site's instances behind HAProxy, with the stores they need; deploy's one door.

Everything outside deploy/ (the CLI aside, the load test and the tests)
imports this module only: it starts and stops clusters, breaks and mends
them (deploy/faults.py), reports their status, starts private servers of a
kind for benchmarks and tests, and re-exports the few helpers they share
(ports, processes, the record). pyproject.toml's import contracts check it.
Inside, a kind of server is a module of deploy/kinds/, the record is
deploy/record.py, the port plan deploy/layout.py.
"""

import json
import secrets
from functools import partial
from pathlib import Path

from deploy import apps, cgroups, kinds, links, netns, record, sockets, stack, stores, swarm, web
from deploy import images as image_builds
from deploy.actions import ACTIONS, act
from deploy.actions import check as check_action
from deploy.alone import server_settings, start_relay, start_server, stop_relay, stop_server
from deploy.errors import DeployError
from deploy.faults import heal, kill, partition, pause, promote, require_cluster, scale, start
from deploy.kinds import etcd, patroninodes
from deploy.kinds.base import Kind, new_password
from deploy.kinds.sentinel import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS
from deploy.layout import BLOCK, MAX_INSTANCES, STORE_SLOTS, free_base_port, free_port
from deploy.options import RUNTIMES, add_up_arguments, as_argv, up_keywords, up_options
from deploy.processes import (
    alive,
    port_free,
    port_open,
    require,
    run_all,
    running,
    signal_group,
    spawn,
    start_time,
    stop,
    wait_for,
    wait_gone,
)
from deploy.record import DEFAULT_STATE_DIR, MARKER, ROOT, Cluster, load, made_by_deploy, make_private_folder
from deploy.stores import ports
from deploy.topology import Topology
from labcore import registry

__all__ = [
    # running a cluster
    "up", "down", "cleanup", "status", "scale", "cpu_throttled", "log_path", "servers_for", "require_cluster",
    "kill", "start", "pause", "partition", "heal", "promote", "ACTIONS", "act", "check_action", "resolve",
    "add_users", "api_token", "Topology", "LB_CHOICES", "RUNTIMES", "SENTINEL_FAILOVER_SECONDS",
    "PATRONI_FAILOVER_SECONDS", "PATRONI_DEMOTION_SECONDS", "logs", "images",
    # starting and acting by request (the control room): the checks alone, and up's options as data
    "check_up", "add_up_arguments", "up_keywords", "up_options", "as_argv",
    # its record and its ports
    "Cluster", "load", "make_private_folder", "made_by_deploy", "MARKER", "DEFAULT_STATE_DIR", "ROOT", "ports",
    "free_port", "free_base_port", "BLOCK", "MAX_INSTANCES", "STORE_SLOTS", "site_env",
    # kinds of server, and private servers outside a cluster
    "Kind", "KINDS", "servers", "start_server", "server_settings", "stop_server", "new_password", "etcd", "netns",
    "web", "cgroup_version", "start_relay", "stop_relay",
    # processes
    "DeployError", "require", "wait_for", "stop", "spawn", "running", "alive", "start_time", "signal_group",
    "port_open", "run_all", "wait_gone",
]

LB_CHOICES = ("roundrobin", "sticky")
# How long Sentinel may take to notice a dead primary and promote a replica: part of this
# interface for the experiments.
SENTINEL_FAILOVER_SECONDS = (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000
# How long a standby under Patroni may wait to take a primary's key once the primary stopped renewing it: the
# key's ttl after its last renewal, and one loop to notice.
PATRONI_FAILOVER_SECONDS = patroninodes.LAB.ttl + patroninodes.LAB.loop_wait
# How long a primary under Patroni may go on as primary once it cannot reach etcd: its next loop, then
# retry_timeout of failed calls before it demotes itself.
PATRONI_DEMOTION_SECONDS = patroninodes.LAB.loop_wait + patroninodes.LAB.retry_timeout
KINDS = kinds.KINDS
servers = kinds.servers
site_env = apps.site_env
cgroup_version = cgroups.version
images = image_builds.build


def up(*, instances=3, sessions="redis", presence="redis", lb="roundrobin", port=8000,
       db="sqlite", env=None, server=web.DEFAULT, durable=True, topology=None, namespaces=False,
       cpu_quota=None, site_cpus=None, runtime="processes", latency=None, channel_layer="", relays=True,
       state_dir=DEFAULT_STATE_DIR):
    """Start a cluster and wait until it serves through the load balancer.

    env: extra environment variables (site settings) for every instance.
    server: how each instance is served (deploy/web.py).
    channel_layer: memory or redis under an ASGI server; "" for the default (deploy/sockets.py).
    durable: False lets the databases lose acknowledged writes on an OS
    crash (PostgreSQL without fsync, SQLite synchronous=NORMAL), for benchmarks.
    topology: a Topology (default: every store alone).
    namespaces: every store node and instance in a network namespace of its
    own, with an address of its own (deploy/netns.py), so that `partition`
    can cut them apart; HAProxy stays on loopback.
    cpu_quota, site_cpus: cores per instance, and the CPUs the instances run
    on, HAProxy and the stores getting the others (cgroups, deploy/cgroups.py).
    runtime: "processes" (this machine's processes) or "swarm" (Docker Swarm services: deploy/swarm.py,
    which refuses the options that need host processes or namespaces).
    latency: {node or instance: milliseconds each way} from the start (deploy/links.py).
    relays: False starts no latency relay (up --no-relays): every node and instance on its own port, for
    benchmarks of the site's own cost; `latency` and `stall` are then refused (deploy/links.py). Swarm has none.
    """
    if runtime not in RUNTIMES:
        raise DeployError(f"--runtime {runtime!r} is not one of: {', '.join(RUNTIMES)}")
    if runtime == "swarm":
        _check_choices(instances, lb)
        return swarm.start_cluster(
            state_dir=state_dir, instances=instances, sessions=sessions, presence=presence, lb=lb, port=port,
            db=db, env=env, server=server, durable=durable, topology=(topology or Topology()).check(),
            namespaces=namespaces, cpu_quota=cpu_quota, site_cpus=site_cpus, latency=latency,
            channel_layer=channel_layer)
    topology, wanted, limits, channel_layer = check_up(
        instances=instances, sessions=sessions, presence=presence, lb=lb, port=port, db=db, server=server,
        topology=topology, namespaces=namespaces, cpu_quota=cpu_quota, site_cpus=site_cpus, state_dir=state_dir,
        channel_layer=channel_layer, latency=latency, relays=relays)
    cluster = Cluster(
        # Absolute: HAProxy reads a relative socket path as host:port.
        state_dir=str(Path(state_dir).resolve()), port=port, lb=lb, sessions=sessions, presence=presence,
        db=db, secret_key=secrets.token_urlsafe(50), proxy_secret=secrets.token_urlsafe(32), server=server,
        channel_layer=channel_layer,
        durable=durable, env=dict(env or {}), topology=topology.record(), cpu=limits.record() if limits else {},
        relays=relays,
    )
    links.check_latencies(cluster, wanted, instances, latency or {})
    make_private_folder(cluster.path)
    # Every cluster starts with empty databases, so runs compare fairly.
    for stale in ("site.sqlite3", "site.sqlite3-wal", "site.sqlite3-shm"):
        (cluster.path / stale).unlink(missing_ok=True)
    cluster.save()
    try:
        if namespaces:
            _make_network(cluster, wanted, topology)
        if limits:
            cgroups.Groups(limits).create()
        links.start_all(cluster, wanted, latency or {})  # now: with --netns, at the namespaces' addresses
        stores.start_all(cluster, wanted)
        for node in cluster.stores.values():
            apps.confine(cluster, node["pid"], cgroups.REST)
        apps.migrate(cluster)
        for number in range(1, instances + 1):
            apps.start_instance(cluster, f"app{number}")
        apps.start_haproxy(cluster)
        apps.wait_serving(cluster)
        links.refresh(cluster)
    except BaseException:
        down(state_dir)
        raise
    return cluster


def check_up(*, instances=3, sessions="redis", presence="redis", lb="roundrobin", port=8000, db="sqlite",
             server=web.DEFAULT, topology=None, namespaces=False, cpu_quota=None, site_cpus=None,
             state_dir=DEFAULT_STATE_DIR, env=None, durable=True, runtime="processes", latency=None,
             channel_layer="", relays=True):
    """Every check `up` makes before it starts anything: DeployError naming the first that fails.

    Return (the topology checked, the kinds of server wanted, the CPU limits
    planned, the channel layer chosen). env and durable need no check;
    latency's names are checked once up has planned the nodes (any latency
    without relays is refused here); they are
    accepted so that the same keywords as up's can be passed. The control
    room calls it to refuse a bad start at once, before it answers.
    """
    _check_choices(instances, lb)
    topology = (topology or Topology()).check()
    if runtime == "swarm":  # what Swarm cannot run, deploy/stack.py refuses
        return topology, stack.check(
            instances=instances, sessions=sessions, presence=presence, db=db, server=server, topology=topology,
            namespaces=namespaces, cpu_quota=cpu_quota, site_cpus=site_cpus, latency=latency,
            channel_layer=channel_layer), None, ""
    if latency:
        links.require_relays(relays, "--latency")
    web.argv(server, port=port)  # a bad choice fails here, before anything starts
    channel_layer = sockets.plan_layer(channel_layer, server=server, presence=presence, topology=topology)
    wanted = stores.with_needs(
        sockets.servers_for_layer(channel_layer, servers_for(sessions=sessions, presence=presence, db=db)), topology)
    stores.check_server(wanted, topology, server)
    previous = load(state_dir)
    if previous and any(running(record) for record in previous.processes()):
        raise DeployError(f"a cluster is already up at {previous.url}; stop it with: python -m deploy down")
    require("haproxy", "haproxy")
    _check_ports(ports(port, instances=instances, servers=wanted, topology=topology, relays=relays))
    if namespaces and (reason := netns.available()):
        raise DeployError(reason)
    limits = cgroups.Limits.plan(port=port, quota=cpu_quota, site_cpus=site_cpus)

    return topology, wanted, limits, channel_layer


def servers_for(*, sessions, presence, db):
    """The kinds of server a cluster of this configuration starts; DeployError for an unknown store.

    The comparison rows (Django's stock engines, registry.COMPARISON_SESSION_STORES)
    are accepted, for the benchmark, but never offered: the error lists the lab's own stores only.
    """
    for value, table, what in (
        (sessions, {**registry.SESSION_STORES, **registry.COMPARISON_SESSION_STORES}, "--sessions"),
        (presence, registry.PRESENCE_STORES, "--presence"),
        (db, registry.DATABASES, "--db"),
    ):
        if value not in table:
            offered = [name for name, row in table.items() if not getattr(row, "comparison", False)]
            raise DeployError(f"{what} {value!r} is not one of: {', '.join(offered)}")
    needed = registry.servers_needed(sessions=sessions, presence=presence, database_name=db)
    missing = [kind for kind in needed if kind not in servers()]
    if missing:
        raise DeployError(f"deploy cannot start {', '.join(missing)} servers yet, which {sessions!r} needs; "
                          f"it starts: {', '.join(servers())}")
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
        swarm.release_engine()  # a dockerd `deploy images` started
        return None
    if not made_by_deploy(cluster.path):
        raise DeployError(f"{cluster.path} was not made by deploy (no {MARKER} in it): "
                          "nothing stopped or removed")
    if cluster.runs_on == "swarm":
        swarm.stop_cluster(cluster)
        return cluster
    run_all([
        partial(stop, cluster.haproxy, timeout=5),
        *(partial(stop, instance, timeout=5) for instance in cluster.instances.values()),
        partial(stores.stop_all, cluster),
        partial(links.stop_all, cluster),
        partial(cleanup, state_dir),
        *([lambda: cgroups.Groups(cluster.cpu).remove()] if cluster.cpu else []),
    ])
    record.remove_private_files(cluster.path)
    return cluster


def cleanup(state_dir=DEFAULT_STATE_DIR, *, everything=False):
    """Remove the namespaces, links and partition rules of the cluster in state_dir, record or not.

    everything: of every cluster this project made on this machine. Return how many namespaces.
    """
    if everything:
        return netns.destroy_all()
    return netns.destroy(netns.prefix_for(Path(state_dir).resolve()))


def status(state_dir=DEFAULT_STATE_DIR):
    """Return what runs, as one JSON-ready dict: `status --json`, whose schema is documented in
    docs/operations/deploy.md; later versions only add fields."""
    cluster = require_cluster(state_dir)
    if cluster.runs_on == "swarm":
        return swarm.status(cluster)
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
        "server": cluster.server,
        "channel_layer": cluster.channel_layer or None,
        "runtime": cluster.runs_on,
        "relays": cluster.relays,
        "haproxy": {"pid": cluster.haproxy.get("pid"), "alive": running(cluster.haproxy)},
        "topology": cluster.topology,
        "network": cluster.net.subnet if cluster.network else None,
        "partitions": cluster.partitions,
        "cpu": cluster.cpu,
        "stores": [{**row, **links.row(cluster, row["name"])} for row in stores.rows(cluster)],
        **stores.summaries(cluster),  # "patroni": its settings in force, under --pg-ha patroni
        "instances": [
            {
                "name": name,
                "host": cluster.host(name),
                "port": i["port"],
                "pid": i["pid"],
                "alive": running(i),
                "lb_state": lb_rows[name]["status"] if name in lb_rows else "unknown",
                "state": apps.state(cluster, name, i, lb_rows[name]["status"] if name in lb_rows else "unknown"),
                "role": None,
                "sockets": sockets.open_sockets(cluster, name, i) if web.is_asgi(cluster.server) else None,
                **links.row(cluster, name),
            }
            for name, i in sorted(cluster.instances.items(), key=lambda kv: kv[1]["port"])
        ],
    }


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


def resolve(name, *, state_dir=DEFAULT_STATE_DIR):
    """The node `name` means now: an alias (`redis:primary`, `pg:primary`, `etcd:leader`) becomes the node that is
    it at this moment (DeployError if none is); any other name comes back as it is."""
    return stores.resolve(require_cluster(state_dir), name)


def log_path(name, *, state_dir=DEFAULT_STATE_DIR):
    cluster = require_cluster(state_dir)
    known = {*cluster.instances, *cluster.stores, "haproxy"}
    if name not in known:
        raise DeployError(f"no log for {name!r}; choose one of: {', '.join(sorted(known))}")
    if cluster.runs_on == "swarm":
        raise DeployError(f"{name} runs on Swarm: its log is its container's (python -m deploy logs {name})")
    return cluster.path / "logs" / f"{name}.log"


def logs(name, *, lines=50, state_dir=DEFAULT_STATE_DIR):
    """The last lines of an instance's or a store's log: its file, or its task's container under Swarm."""
    cluster = require_cluster(state_dir)
    if cluster.runs_on == "swarm":
        return swarm.logs(cluster, name, lines)
    path = log_path(name, state_dir=state_dir)
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# Inside


def _manage(cluster, *argv, stdin=None):
    """A management command with the cluster's settings: here, or in an instance's container under Swarm."""
    return (swarm.manage if cluster.runs_on == "swarm" else apps.manage)(cluster, *argv, stdin=stdin)


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
    """A namespace per store node that listens on an address (not on a UNIX socket) and per instance slot."""
    names = stores.placed_nodes(wanted, topology, cluster.port)
    names += [f"app{n}" for n in range(1, MAX_INSTANCES + 1)]  # every slot: `scale` and HAProxy's config need them
    prefix = netns.prefix_for(cluster.path)
    netns.destroy(prefix)  # what a crashed run of this state folder left
    cluster.network = netns.create(prefix, netns.free_net_number(), names).record()
    cluster.save()
