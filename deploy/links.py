"""A cluster's links: a latency relay (deploy/latency.py) in front of every store node and instance.

Every relayed node listens behind its relay: the relay takes the node's
port (the one in the record, in the site's settings and in every address
the node announces: Redis's replica-announce-port, Sentinel's announce-port)
and the node listens at layout.behind(port). So every connection to a node
passes its relay, whoever opened it and whatever address it learnt, and
`deploy latency NODE MS` works on any running cluster. The relays start
before the nodes and outlive their deaths (a relay is the network, not the
node); `down` stops them all.

Latency is per node and per direction; a connection between nodes A and B
(through B's relay, which knows A as a peer: deploy/sources.py) is delayed
by latency(A) + latency(B) each way, one from outside (HAProxy, a client)
by the node's alone. A stall of a node holds every connection to and from
it, open, for its seconds. Each relay learns the others' settings and
processes again (`refresh`) after every change and every start of a node.

An etcd member's relay carries two routes, its clients' port and its
peers' (its advertised client and peer URLs name them), a Redis Cluster
node's its clients' port and its cluster bus. Not relayed: memcached (a
UNIX socket).

A cluster started with `up --no-relays` (Cluster.relays false, read here,
and by each relayed kind where it starts a node, mostly through
deploy/kinds/base.py's `where`) has no relay at all: every node and instance listens on its own port, so a benchmark
measures the site and its stores without a relay's hop on every
connection, and `latency`, `stall` and `up --latency` are refused at once.
"""

import os
import shutil
import tempfile
from pathlib import Path

from deploy import cgroups, kinds, latency, layout, stores
from deploy.errors import DeployError
from deploy.layout import behind
from deploy.processes import run_all, running
from deploy.topology import Topology


def relayed(cluster, name):
    """Whether node or instance `name` of the cluster is behind a relay (its kind's `relayed`; none under
    up --no-relays)."""
    if not cluster.relays:
        return False
    if name in cluster.instances:
        return True
    record = cluster.stores.get(name)
    return record is not None and kinds.for_node(stores.kind_of(name, record), Topology.of(cluster.topology)).relayed


def plan(cluster, servers):
    """[(name, routes)] of the store nodes these servers need that go behind a relay; routes as latency.start
    takes them, from the node's kind (`relay_routes`: etcd's members relay their peers' port too); none under
    up --no-relays."""
    if not cluster.relays:
        return []
    topology = Topology.of(cluster.topology)
    return [(name, kind.relay_routes(cluster, name, port))
            for server in servers if (kind := kinds.for_server(server, topology)).relayed
            for name, _, port in kind.nodes(topology, lambda slots, index: layout.store_port(cluster.port, slots,
                                                                                               index))]


def place_instance(cluster, name):
    """Start instance `name`'s relay, on its port, unless the cluster runs without relays; return the port the
    instance itself listens at: layout.behind(its port) behind its relay, else its own."""
    host, port = cluster.host(name), cluster.instance_port(name)
    if not cluster.relays:
        return port
    start(cluster, name, {name: ((host, port), (host, behind(port)))})
    return behind(port)


def require_relays(relays, wanted):
    """DeployError unless the cluster runs relays: `wanted` (latency, a stall, up --latency) is made by them."""
    if not relays:
        raise DeployError(f"this cluster runs without relays (up --no-relays): {wanted} needs the latency relay "
                          "in front of each node; start the cluster again without --no-relays")


def start_all(cluster, servers, latencies):
    """Record the latencies a new cluster starts with (checked: check_latencies) and start the relays of the
    store nodes these servers need, before the nodes; nothing under up --no-relays."""
    if not cluster.relays:
        return
    _links(cluster, create=True)["latency"].update({name: {"ms": ms, "jitter_ms": 0} for name, ms in latencies.items()})
    cluster.save()
    for name, routes in plan(cluster, servers):
        start(cluster, name, routes)


def check_latencies(cluster, servers, instances, latencies):
    """DeployError unless every name is a relayed node these servers need or one of the instances, and every
    value a number of ms (deploy/relay.py's range). (Any latency without relays: refused by cluster.check_up.)"""
    names = [name for name, _ in plan(cluster, servers)] + [f"app{n}" for n in range(1, instances + 1)]
    for name, ms in latencies.items():
        if name not in names:
            raise DeployError(f"--latency names {name!r}, which is not a node behind a relay here; "
                              f"choose among: {', '.join(names)}")
        _milliseconds(ms, f"{name}'s latency")


def start(cluster, name, routes):
    """Start node `name`'s relay for `routes` ({route: (listen, target)}) unless it runs already."""
    links = _links(cluster, create=True)
    if running(links["relays"].get(name, {})):
        return
    settings = links["latency"].get(name, {})
    record = latency.start(routes,
                           control=Path(links["folder"]) / f"{name}.sock",
                           log_path=cluster.path / "logs" / f"{name}.relay.log",
                           delay_ms=settings.get("ms", 0), jitter_ms=settings.get("jitter_ms", 0),
                           wrap=lambda argv: cluster.command(name, argv))
    links["relays"][name] = record
    cluster.save()
    if cluster.cpu:
        cgroups.Groups(cluster.cpu).join(record["pid"], cgroups.REST)


def refresh(cluster):
    """Tell every relay the other nodes' latencies and processes, as they are now."""
    links = _links(cluster)
    peers = {name: {"ms": links["latency"].get(name, {}).get("ms", 0),
                    "jitter_ms": links["latency"].get(name, {}).get("jitter_ms", 0),
                    "address": cluster.host(name), "pids": [record["pid"]]}
             for name, record in [*cluster.stores.items(), *cluster.instances.items()]
             if relayed(cluster, name) and running(record)}
    for name, record in links["relays"].items():
        if running(record):
            latency.set_peers(record["control"], {peer: s for peer, s in peers.items() if peer != name})


def set_latency(cluster, name, ms, jitter_ms=0):
    """Delay every connection to and from node `name` by ms (0: none) each way, jitter_ms either side."""
    relay = _relay(cluster, name)
    _milliseconds(ms, "the latency"), _milliseconds(jitter_ms, "the jitter")
    latency.set_delay(relay["control"], ms, jitter_ms=jitter_ms)
    _links(cluster)["latency"][name] = {"ms": ms, "jitter_ms": jitter_ms}
    cluster.save()
    refresh(cluster)


def stall(cluster, name, seconds):
    """Deliver nothing to or from node `name` for `seconds`, its connections open; then deliver what queued."""
    relay = _relay(cluster, name)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise DeployError(f"a stall lasts more than 0 and at most 3600 seconds, not {seconds!r}")
    if not running(cluster.stores.get(name) or cluster.instances.get(name) or {}):
        raise DeployError(f"{name} is not running: there is nothing of it to stall")
    refresh(cluster)  # every relay knows `name`'s processes as they are now
    latency.stall(relay["control"], seconds)
    for other, record in _links(cluster)["relays"].items():
        if other != name and running(record):
            latency.stall(record["control"], seconds, peer=name)


def stop(cluster, name):
    """Stop node or instance `name`'s relay and forget it (an instance scaled away)."""
    links = _links(cluster)
    record = links["relays"].pop(name, None)
    links["latency"].pop(name, None)
    if record:
        latency.stop(record)
        cluster.save()


def row(cluster, name):
    """status's fields for a node or instance: latency_ms and jitter_ms (0 when none), and relay_cpu_s, the CPU
    seconds its relay used so far (None without a running relay): what the distance costs the machine."""
    links = _links(cluster)
    settings, relay = links["latency"].get(name, {}), links["relays"].get(name)
    return {"latency_ms": settings.get("ms", 0), "jitter_ms": settings.get("jitter_ms", 0),
            "relay_cpu_s": _cpu_seconds(relay["pid"]) if relay and running(relay) else None}


def _cpu_seconds(pid):
    """User and system CPU seconds of process pid so far, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)  # utime, stime


def stop_all(cluster):
    """Stop every relay and remove their control sockets' folder."""
    links = cluster.links
    if not links:
        return
    run_all([lambda record=record: latency.stop(record) for record in links.get("relays", {}).values()])
    shutil.rmtree(links["folder"], ignore_errors=True)


def _links(cluster, *, create=False):
    """The record's links: {"folder", "relays": {name: record}, "latency": {name: {"ms", "jitter_ms"}}}; for a
    cluster without any (recorded before relays existed), none, unless create (then made and saved)."""
    if not cluster.links:
        if not create:
            return {"relays": {}, "latency": {}}
        # Short: a UNIX socket's path has at most 107 bytes, and a state folder's may be long.
        cluster.links = {"folder": tempfile.mkdtemp(prefix="lab-links-"), "relays": {}, "latency": {}}
        cluster.save()
    return cluster.links


def _relay(cluster, name):
    require_relays(cluster.relays, "latency or a stall")
    known = [*cluster.stores, *cluster.instances]
    if name not in known:
        raise DeployError(f"no instance or store node {name!r}; the cluster has: {', '.join(known)}")
    relay = _links(cluster)["relays"].get(name)
    if relay is None or not running(relay):
        raise DeployError(f"{name} has no relay: latency and stalls are for instances and the nodes of "
                          "Redis, PostgreSQL and etcd")
    return relay


def _milliseconds(value, what):
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= latency.MAX_DELAY_MS:
        raise DeployError(f"{what} must be a number of milliseconds from 0 to {latency.MAX_DELAY_MS}, "
                          f"not {value!r}")
