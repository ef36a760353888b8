"""Breaking and mending a running cluster: kill, start, pause and resume, partition and heal, promote, scale.

Each takes an instance (app1..) or a store node (by name or by an alias
such as `redis:primary`, resolved now: deploy/stores.py); what a store node
is does not matter here, its kind's module knows (deploy/kinds/).
"""

import signal

from deploy import apps, cgroups, links, netns, powerloss, stores, swarm
from deploy.errors import DeployError
from deploy.layout import MAX_INSTANCES
from deploy.processes import port_free, running, signal_group, stop
from deploy.record import DEFAULT_STATE_DIR, load


def require_cluster(state_dir):
    cluster = load(state_dir)
    if cluster is None:
        raise DeployError("no cluster is up; start one with: python -m deploy up")
    return cluster


def kill(name, *, graceful=False, process=None, state_dir=DEFAULT_STATE_DIR):
    """Crash an instance, or a store node, like a dead machine (SIGKILL to its process group).

    graceful: take it out of the load balancer first, wait for its requests
    to finish, then SIGTERM it, so no request fails. process: one process
    of a store node alone (`postgres` under Patroni).
    """
    cluster = require_cluster(state_dir)
    if cluster.runs_on == "swarm":
        if graceful:
            raise DeployError("--signal TERM is not offered under Swarm: kill sends SIGKILL to the task's container")
        return swarm.kill(cluster, name)
    node = _store_node(cluster, name)
    if node:
        if graceful:
            raise DeployError(f"--signal TERM is for instances; {node} is a store node")
        stores.kill(cluster, node, process)
        return node
    if process:
        raise DeployError(f"--process is for store nodes; {name} is an instance")
    instance = _instance(cluster, name)
    if not running(instance):
        raise DeployError(f"{name} is not running")
    if graceful:
        apps.take_out(cluster, name)
        stop(instance, sig=signal.SIGTERM, timeout=15)
    else:
        stop(instance, sig=signal.SIGKILL)


def start(name, *, state_dir=DEFAULT_STATE_DIR):
    """Bring a stopped instance back into the load balancer, or a store node back into its topology."""
    cluster = require_cluster(state_dir)
    if cluster.runs_on == "swarm":
        return swarm.start(cluster, name)
    node = _store_node(cluster, name)
    if node:
        stores.start(cluster, node)
        apps.confine(cluster, cluster.stores[node]["pid"], cgroups.REST)
        links.refresh(cluster)  # the relays know its new processes
        return node
    instance = _instance(cluster, name)
    if running(instance):
        raise DeployError(f"{name} is already running (pid {instance['pid']})")
    apps.start_instance(cluster, name)
    apps.bring_in(cluster, name)


def pause(name, *, resume=False, state_dir=DEFAULT_STATE_DIR):
    """Freeze an instance or a store node (SIGSTOP): it keeps its connections and answers nothing.

    resume: SIGCONT, and it carries on where it stopped.
    """
    cluster = require_cluster(state_dir)
    node = _store_node(cluster, name)
    if node:
        stores.pause(cluster, node, resume=resume)
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


def power_loss(server, *, state_dir=DEFAULT_STATE_DIR):
    """Every node of a store (`redis`, `postgres`, or any node of it by name) loses what it had not fsynced, at one
    instant, and starts again.

    Its nodes are killed first (the power is off for them too), then every
    disk drops its unsynced writes, then each node starts on what its disk
    kept, in the order they started (primaries first). Needs a cluster
    started with --power-loss. Return {node: what its disk lost}.
    """
    cluster = require_cluster(state_dir)
    node = _store_node(cluster, server)
    if node:  # a node's name (or an alias) stands for its store
        server = stores.kind_of(node, cluster.stores[node])
    nodes = [name for name, record in stores.of_server(cluster, server).items() if record.get("disk")]
    if not nodes:
        raise DeployError(f"no {server} node of this cluster is on a power-loss disk: `deploy up --power-loss` "
                          "puts Redis's and PostgreSQL's data folders there")
    for name in nodes:
        if running(cluster.stores[name]):
            stores.kill(cluster, name)
    lost = {name: powerloss.power_loss(cluster.stores[name]["disk"]) for name in nodes}
    for name in nodes:
        stores.start(cluster, name)
        apps.confine(cluster, cluster.stores[name]["pid"], cgroups.REST)
    links.refresh(cluster)  # the relays know the nodes' new processes
    return lost


def _node_name(cluster, name):
    resolved = stores.resolve(cluster, name.strip())
    if resolved not in cluster.net.nodes:
        raise DeployError(f"no node or instance named {name!r}; the cluster has: "
                          f"{', '.join([*cluster.stores, *cluster.instances])}")
    return resolved


def promote(*, force=False, state_dir=DEFAULT_STATE_DIR):
    """Promote the PostgreSQL standby that received the most WAL; return its name.

    force: even while the old primary still runs (behind a partition, say).
    """
    return stores.promote(require_cluster(state_dir), force=force)


def _store_node(cluster, name):
    """The store node `name` means (resolving redis:primary, pg:primary, etcd:leader), or None for an instance."""
    node = stores.resolve(cluster, name)
    return node if node in cluster.stores else None


def _instance(cluster, name):
    if name not in cluster.instances:
        raise DeployError(f"no instance or store node {name!r}; the cluster has: "
                          f"{', '.join([*cluster.instances, *cluster.stores])}")
    return cluster.instances[name]


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
        apps.start_instance(cluster, name)
        apps.bring_in(cluster, name)
    for number in range(current, count, -1):
        name = f"app{number}"
        if running(cluster.instances[name]):
            apps.take_out(cluster, name)
            stop(cluster.instances[name], sig=signal.SIGTERM, timeout=15)
        else:
            cluster.runtime.set_state(name, "maint")
        links.stop(cluster, name)  # its relay holds the instance's port: a later scale-up takes it again
        del cluster.instances[name]
        cluster.save()
    return cluster
