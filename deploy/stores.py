"""A cluster's store nodes, whatever their kind: plan, start, ask, break, mend, and point the site at them.

What a kind of server does is its module's (deploy/kinds/); this module
asks the table (deploy/kinds/__init__.py) which kind a server or a node is,
and does the same to every kind. Which servers a configuration needs is
the registry's answer (labcore/registry.py); how many nodes, the
topology's (deploy/topology.py).

Every node is named; `redis:primary`, `pg:primary` and `etcd:leader` name
whichever node is the primary (the leader) now, asked of the stores
themselves, never remembered.
"""

import signal
from functools import partial

from deploy import kinds, layout
from deploy.errors import DeployError
from deploy.processes import run_all, running, signal_tree
from deploy.topology import Topology


def nodes(servers, topology, port_of):
    """[(name, node kind, port)] of every store node, primaries first; port_of(slot range, index) -> port."""
    return [node for server in servers for node in kinds.for_server(server, topology).nodes(topology, port_of)]


def ports(base, *, instances, servers, topology=None, relays=True):
    """Every port a cluster of this shape uses, with what it is for.

    relays: with latency relays (deploy/links.py), a relayed node or instance also listens behind its relay,
    at layout.behind of each of its ports (a Redis Cluster node's bus too); without (up --no-relays), not.
    """
    topology = topology or Topology()
    used = {base: "load balancer", base + layout.STATS_OFFSET: "HAProxy stats"}
    for server in servers:
        kind = kinds.for_server(server, topology)
        planned = kind.nodes(topology, lambda slots, index: layout.store_port(base, slots, index))
        own = {**{port: name for name, _, port in planned}, **kind.extra_ports(base, planned)}
        used.update(own)
        if kind.relayed and relays:
            used.update({layout.behind(port): f"{what} behind its relay" for port, what in own.items()})
    for name in (f"app{n}" for n in range(1, instances + 1)):
        used[layout.instance_port(base, name)] = name
        if relays:
            used[layout.behind(layout.instance_port(base, name))] = f"{name} behind its relay"
    return used


def with_needs(servers, topology):
    """servers, each after the servers its kind needs running first (Patroni's etcd), every one once."""
    ordered = []
    for server in servers:
        ordered += [*kinds.for_server(server, topology).needs, server]
    return list(dict.fromkeys(ordered))


def check_server(servers, topology, server):
    """DeployError if the instances' server (deploy/web.py) would overrun a kind these servers need."""
    for name in servers:
        kinds.for_server(name, topology).check_server(server)


def placed_nodes(servers, topology, base):
    """The names of the nodes that listen on an address (each gets a namespace with --netns)."""
    return [name for name, node_kind, _ in nodes(servers, topology, partial(layout.store_port, base))
            if kinds.for_node(node_kind, topology).placed]


def start_all(cluster, servers):
    """Start every node these servers need, replicas following their primary; record each in cluster.stores."""
    topology = Topology.of(cluster.topology)
    for server in servers:
        kind = kinds.for_server(server, topology)
        kind.start_all(cluster, topology, kind.nodes(topology, partial(layout.store_port, cluster.port)))


def kind_of(name, record):
    return record.get("kind", name)


def _kind(cluster, name):
    return kinds.for_node(kind_of(name, cluster.stores[name]), Topology.of(cluster.topology))


def group(cluster, kind):
    """The cluster's nodes of a kind: name -> record, in the order they started (primaries first)."""
    return {name: record for name, record in cluster.stores.items() if kind_of(name, record) in kind.node_kinds}


def of_server(cluster, server):
    """The cluster's nodes that hold a server's data (`redis`: not the Sentinels): name -> record."""
    kind = kinds.for_server(server, Topology.of(cluster.topology))
    return {name: record for name, record in group(cluster, kind).items() if kind_of(name, record) == kind.server}


def _kinds_present(cluster):
    topology = Topology.of(cluster.topology)
    return list(dict.fromkeys(kinds.for_node(kind_of(n, r), topology) for n, r in cluster.stores.items()))


def rows(cluster):
    """status's `stores`: every node with its role, as the node itself reports it, and its state."""
    listed = []
    for name, record in cluster.stores.items():
        kind, alive = _kind(cluster, name), running(record)
        role = (kind.role(record) if alive else "down").replace("down", "unreachable" if alive else "down")
        listed.append({"name": name, "kind": kind_of(name, record), "role": role, "host": record.get("host"),
                       "port": record["port"], "socket": record.get("socket"), "pid": record["pid"],
                       "alive": alive, "state": cluster.state(name, record), **kind.row(record, alive)})
    return listed


def resolve(cluster, name):
    """A node's name; an alias (`redis:primary`, `pg:primary`, `etcd:leader`) becomes the node that is it now."""
    topology = Topology.of(cluster.topology)
    for kind in kinds.KINDS.values():
        if name in kind.aliases and kind.serves(topology):
            return kind.resolve(name, topology, group(cluster, kind))
    return name


def stop_all(cluster):
    """Stop every store node (Sentinels first, so they do not fail over while the rest stop); remove data."""
    order = sorted(cluster.stores, key=lambda name: not _kind(cluster, name).stops_first)
    run_all([partial(_kind(cluster, name).stop, cluster.stores[name]) for name in order])


def kill(cluster, name, process=None):
    """SIGKILL a node (its kind knows its processes); process: one of them alone (`postgres` under Patroni)."""
    record = cluster.stores[name]
    if not running(record):
        raise DeployError(f"{name} is not running")
    _kind(cluster, name).kill(record, process)


def pause(cluster, name, *, resume=False):
    record = cluster.stores[name]
    if not running(record):
        raise DeployError(f"{name} is not running")
    signal_tree(record["pid"], signal.SIGCONT if resume else signal.SIGSTOP)


def start(cluster, name):
    """Start a stopped node again, as what the topology needs it to be now (its kind's `restart`)."""
    record = cluster.stores[name]
    if running(record):
        raise DeployError(f"{name} is already running (pid {record['pid']})")
    new = _kind(cluster, name).restart(cluster, Topology.of(cluster.topology), name, record)
    cluster.stores[name] = {"kind": kind_of(name, record), **new}
    cluster.save()


def promote(cluster, *, force=False):
    """Promote a replica by hand (PostgreSQL's standby that received the most WAL); return its name."""
    topology = Topology.of(cluster.topology)
    for kind in kinds.KINDS.values():
        if type(kind).promote is not kinds.Kind.promote and kind.serves(topology):
            return kind.promote(cluster, group(cluster, kind), force=force)
    raise DeployError("no kind of server here can be promoted")


def summaries(cluster):
    """Each kind's top-level fields of `status --json` (Patroni's settings in force)."""
    found = {}
    for kind in _kinds_present(cluster):
        found.update(kind.summary(group(cluster, kind)))
    return found


def store_env(cluster):
    """The site settings that point the instances at the cluster's stores."""
    topology = Topology.of(cluster.topology)
    env = {}
    for kind in _kinds_present(cluster):
        env.update(kind.env(topology, group(cluster, kind)))
    return env


def site_variables():
    """Every setting any kind may set: cleared from the caller's shell, so only this cluster's stores count."""
    return list(dict.fromkeys(variable for kind in kinds.KINDS.values() for variable in kind.variables))
