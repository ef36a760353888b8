"""The port plan of a cluster, computed here and only here; the maximums that follow from it.

Ports are offsets from the load balancer's port, the cluster's base:

| port | what |
|---|---|
| base | the load balancer |
| base + 1 | HAProxy's stats page |
| base + 2 to base + 9 | Redis Cluster's bus ports, one per node (deploy/kinds/rediscluster.py) |
| base + 10 + N | instance appN, N from 1 to 16 |
| base + 27 to base + 29 | free: the next kind of server's slots |
| base + 30 to base + 59 | store nodes: a range of slots per kind of server |
| base + 60 to base + 119 | behind a relay: a node whose port is P listens at P + 60 (deploy/links.py) |

The store slots leave room for a kind's replicas, Sentinels, standbys and
majority-store members; how many nodes of a kind a cluster may have follows
from its range (`max_nodes`), never from a copy of it. An etcd member takes
one slot: it listens for clients on 127.0.0.1 and for its peers on
127.0.0.2, at the same port (deploy/kinds/etcd.py). The load test and the
tests ask these functions (through deploy.cluster) instead of adding
offsets themselves.
"""

import collections
import random
import threading
from pathlib import Path

from deploy.processes import port_free
from deploy.sizing import MAX_INSTANCES  # noqa: F401 (part of the plan: slots base + 11 to base + 26)

STATS_OFFSET, INSTANCE_OFFSET = 1, 10
STORE_SLOTS = {
    "redis-bus": range(2, 10),
    "redis": range(30, 40),
    "sentinel": range(40, 43),
    "memcached": range(43, 45),
    "postgres": range(45, 52),
    "etcd": range(52, 60),
}
RELAY_OFFSET = 60  # a node behind its relay listens this far above its port (deploy/links.py)
BLOCK = 2 * RELAY_OFFSET  # ports from the base that a cluster may use


def max_nodes(kind):
    """How many nodes of a kind of server fit a cluster: the length of its slot range."""
    return len(STORE_SLOTS[kind])


# The maximums that follow from the slots: one node of each range is the primary.
MAX_REDIS_REPLICAS = max_nodes("redis") - 1
# Cluster nodes need a bus port each too, from the "redis-bus" slots.
MAX_CLUSTER_NODES = min(max_nodes("redis"), max_nodes("redis-bus"))
MAX_PG_STANDBYS = max_nodes("postgres") - 1


def instance_port(base, name):
    return base + INSTANCE_OFFSET + int(name.removeprefix("app"))


def behind(port):
    """Where a node whose port (its relay's) is `port` listens itself."""
    return port + RELAY_OFFSET


def store_port(base, kind, index=0):
    """The port of the index-th node of a kind of server."""
    return base + STORE_SLOTS[kind][index]


SINGLE_PORTS = 2000  # the top of the ports below the ephemeral range: single servers' (free_port), never a block's
LOWEST_PORT = 10000  # the lowest port a block may start at
_given = collections.deque(maxlen=256)  # the ports free_port gave last in this process, maybe not bound yet
_giving = threading.Lock()


def port_ranges():
    """(the range blocks start in, the range of single ports): both below the kernel's ephemeral range, the
    single ports at its top; RuntimeError if the ephemeral range starts too low to leave room for them."""
    high = ephemeral_ports()[0]
    single = range(high - SINGLE_PORTS, high)
    if single.start - BLOCK <= LOWEST_PORT:
        raise RuntimeError(f"the kernel's ephemeral ports start at {high}: no room below them for the lab's ports "
                           f"(from {LOWEST_PORT}); raise net.ipv4.ip_local_port_range's first port")
    return range(LOWEST_PORT, single.start - BLOCK), single


def free_port():
    """A port free now, for one server outside a cluster.

    Below the ephemeral range, as the blocks are, so that no outgoing
    connection takes it meanwhile, nor, while its server is down, connects
    to itself through it (TCP lets a socket whose port is its destination's
    connect to itself) and holds it when the server restarts; above the
    blocks (the top SINGLE_PORTS), so that it never lands in a block picked
    for a cluster that has not bound it yet. Drawn at random, so that
    processes side by side try different ports, and never one this process
    gave in its last 256 calls.
    """
    single = port_ranges()[1]
    with _giving:
        for port in random.sample(single, len(single)):
            if port not in _given and port_free(port):
                _given.append(port)
                return port
    raise RuntimeError(f"no free port among the {SINGLE_PORTS} below the ephemeral range")


def free_base_port():
    """A base whose whole block of ports is free now.

    Blocks lie below the kernel's ephemeral range (32768 and up on Linux),
    from which every outgoing connection takes its own port: a block there
    could lose a port to a connection between this check and a server's
    start. The search starts at a random block, so that runs side by side
    on one machine do not all try the same one.
    """
    starts = port_ranges()[0]
    start = random.choice(starts)
    for base in [*range(start, starts.stop, BLOCK + 7), *range(starts.start, start, BLOCK + 7)]:
        if all(port_free(base + offset) for offset in range(BLOCK)):
            return base
    raise RuntimeError(f"no free block of {BLOCK} ports below the ephemeral range")


def ephemeral_ports():
    """The kernel's range of ports for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except OSError:
        return 32768, 60999
