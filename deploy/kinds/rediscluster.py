"""Redis Cluster: the key space cut into shards, each a primary with one replica.

`--redis cluster --redis-shards N` starts 2N real Redis nodes
(`--cluster-enabled yes`): `redis1`..`redisN` are the primaries, each
serving an equal range of the 16,384 hash slots, and `redis{N+k}` is the
replica of `redisk`. The cluster is formed by hand rather than by
`redis-cli --cluster create`, which picks masters and pairs replicas by
its own rules: slots first (ADDSLOTSRANGE), then MEET, then REPLICATE, so
the names mean the same thing in every run.

Failover needs no Sentinel: the primaries notice a peer silent for
NODE_TIMEOUT_MS, mark it failed by majority, and its replica promotes
itself. `cluster-require-full-coverage no` keeps the other shards serving
meanwhile (the default stops the whole cluster while any slot has no
primary), so a dead shard costs only its own third of the keys.

The cluster bus: every node also listens on a second port for its peers,
port + 10000 by default. From a cluster's block (below 32768) that lands
either in the kernel's ephemeral range, where an outgoing connection can
take it first, or in another cluster's block 10,000 ports up. So each node
gets its bus port from the cluster's own block (`cluster-port`, the slots
"redis-bus" of deploy/layout.py), never port + 10000.

With `--netns` each node lives in its namespace at its own address, and
announces that address (`cluster-announce-ip`) to its peers and in CLUSTER
SLOTS and MOVED, so a client in any namespace or in the root one reaches
the node the cluster names; the nodes MEET by those addresses.

Credentials are those of every Redis node here (deploy/kinds/redis.py): one
password per cluster, `requirepass` and `masterauth`, in a 0600 file; the
bus between nodes carries no commands from clients.
"""

import redis

from deploy import layout
from deploy.errors import DeployError
from deploy.kinds import redis as alone
from deploy.kinds.base import LOOPBACK, Kind, host_of, where
from deploy.layout import behind
from deploy.processes import wait_for

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
REPLICAS_PER_SHARD = 1


def node_count(shards):
    return shards * (1 + REPLICAS_PER_SHARD)


def slot_ranges(shards):
    """[(first, last)] of each primary: the slots cut into `shards` nearly equal ranges."""
    edges = [round(n * SLOTS / shards) for n in range(shards + 1)]
    return [(edges[n], edges[n + 1] - 1) for n in range(shards)]


def args(port, bus_port, folder, relayed=False, host=LOOPBACK):
    """relayed: behind its latency relay (deploy/links.py) a node listens for its peers at layout.behind(bus_port),
    and announces the relay's ports, its client port and its bus port, to its peers and in CLUSTER SLOTS.
    host: the address it listens on and announces (its namespace's with --netns)."""
    bus = ["--cluster-port", str(behind(bus_port)), "--cluster-announce-port", str(port),
           "--cluster-announce-bus-port", str(bus_port)] if relayed else ["--cluster-port", str(bus_port)]
    return ["--cluster-enabled", "yes", "--cluster-config-file", f"{folder}/nodes.conf",
            *bus, "--cluster-announce-ip", host, "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage", "no",
            # A replica promotes itself however long its link was down: without persistence
            # the alternative is a shard with no primary until an operator acts.
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
            "--repl-ping-replica-period", "1"]


def start_node(cluster, name, port, bus_port, password, *, relayed=False, host=LOOPBACK, command=None):
    """A cluster node in a folder of its own; a restarted one finds its nodes.conf and rejoins,
    empty, as a Redis without disk does, and copies its primary.

    host, command: its address and how to run it there (in its namespace: deploy/kinds/base.py's `where`)."""
    folder = alone.node_folder(cluster, name)
    record = alone.start_redis(port=port, state_dir=cluster.path, password=password, durable=cluster.durable,
                                name=name, folder=folder,
                                args=[*args(port, bus_port, folder, relayed, host), *alone.persistence(cluster)],
                                relayed=relayed, host=host, command=command)
    return {**record, "data": str(folder), "bus_port": bus_port}


def _client(record):
    return redis.Redis(host=host_of(record), port=record["port"], password=record["password"], socket_timeout=2,
                       socket_connect_timeout=2, decode_responses=True)


def form(records, shards):
    """Give the primaries their slots, introduce every node, pair the replicas; wait until it serves.

    records: the nodes' records, primaries first, in name order.
    """
    primaries, replicas = records[:shards], records[shards:]
    ids = []
    for epoch, (record, (first, last)) in enumerate(zip(primaries, slot_ranges(shards)), start=1):
        with _client(record) as client:
            # Distinct epochs before they meet, as redis-cli does: no collision to settle.
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            ids.append(client.execute_command("CLUSTER", "MYID"))
    with _client(records[0]) as client:
        for record in records[1:]:
            client.execute_command("CLUSTER", "MEET", host_of(record), record["port"], record["bus_port"])
    wait_for(lambda: all(_known(record) == len(records) for record in records), timeout=30,
             what=f"the {len(records)} Redis Cluster nodes to know each other")
    for index, record in enumerate(replicas):
        wait_for(lambda: _replicate(record, ids[index % shards]), timeout=30,
                 what=f"the node on port {record['port']} to follow its primary")
    wait_for(lambda: all(_serving(record) for record in records), timeout=60,
             what="every Redis Cluster node to report cluster_state:ok and every replica to copy its primary")


def _replicate(record, primary_id):
    """CLUSTER REPLICATE; False while the node knows the primary only by the temporary name of a handshake."""
    try:
        with _client(record) as client:
            client.execute_command("CLUSTER", "REPLICATE", primary_id)
    except redis.ResponseError as exc:
        if "Unknown node" in str(exc):
            return False
        raise
    return True


def _known(record):
    try:
        with _client(record) as client:
            return int(client.cluster("INFO").get("cluster_known_nodes", 0))
    except redis.RedisError:
        return 0


def _serving(record):
    try:
        with _client(record) as client:
            state = client.cluster("INFO").get("cluster_state")
            replication = client.info("replication")
    except redis.RedisError:
        return False
    return state == "ok" and (replication["role"] == "master" or replication.get("master_link_status") == "up")


def slots(record):
    """The slot ranges a node serves as primary now ("0-5460", several joined by commas); "" otherwise."""
    try:
        with _client(record) as client:
            ranges = client.cluster("SLOTS")
    except redis.RedisError:
        return ""
    # CLUSTER SLOTS: [first, last, [host, port, id] of the primary, the replicas' ...] per range.
    return ",".join(f"{first}-{last}" for first, last, primary, *_ in sorted(ranges)
                    if int(primary[1]) == record["port"])


def bus_port(base, name):
    """A node's bus port: the same offset of the cluster's block for the same node, always."""
    return layout.store_port(base, "redis-bus", int(name.removeprefix("redis")) - 1)


class RedisCluster(Kind):
    """Redis Cluster: `redis_shards` primaries, each with one replica, sharing the hash slots."""

    name = "redis-cluster"
    server = "redis"
    variables = ("REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SYNC")
    aliases = ("redis:primary",)
    node_kinds = ("redis",)

    def serves(self, topology):
        return topology.redis == "cluster"

    def check(self, topology):
        most = layout.MAX_CLUSTER_NODES
        if not 1 <= topology.redis_shards or node_count(topology.redis_shards) > most:
            raise DeployError(f"--redis-shards must be between 1 and {most // (1 + REPLICAS_PER_SHARD)} "
                              f"(each shard is a primary and {REPLICAS_PER_SHARD} replica), "
                              f"not {topology.redis_shards}")
        # A session write can wait for its shard's own replica.
        alone.check_sync(topology, REPLICAS_PER_SHARD)

    def nodes(self, topology, port_of):
        return [(f"redis{n + 1}", "redis", port_of("redis", n)) for n in range(node_count(topology.redis_shards))]

    relayed = True

    def extra_ports(self, base, planned):
        return {bus_port(base, name): f"{name}'s cluster bus" for name, _, _ in planned}

    def relay_routes(self, cluster, name, port):
        """Its clients' port and its cluster bus, at its address."""
        host, bus = cluster.host(name), bus_port(cluster.port, name)
        return {**super().relay_routes(cluster, name, port), f"{name}-bus": ((host, bus), (host, behind(bus)))}

    def start_all(self, cluster, topology, planned):
        super().start_all(cluster, topology, planned)
        form([cluster.stores[name] for name, _, _ in planned], topology.redis_shards)

    def start_node(self, cluster, name, port, password):
        return start_node(cluster, name, port, bus_port(cluster.port, name), password, **where(cluster, name))

    def role(self, record):
        return alone.role(record)

    def row(self, record, alive):
        return {"slots": slots(record) if alive else ""}

    def url(self, record):
        return alone.url(record)

    def env(self, topology, group):
        return {"REDIS_URL": alone.url(next(iter(group.values()))),
                "REDIS_CLUSTER_NODES": ",".join(f"{host_of(r)}:{r['port']}" for r in group.values()),
                "REDIS_SYNC": str(topology.redis_sync)}

    def resolve(self, alias, topology, group):
        return alone.primary_of(group)


KIND = RedisCluster()
