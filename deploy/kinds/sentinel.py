"""Redis with replicas and Sentinels (`--redis sentinel`): a primary that fails over on its own.

A primary `redis1`, replicas `redis2`.. following it, and three Sentinels
(`sentinel1`..) that watch it, agree (quorum 2) that it is down after
DOWN_AFTER_MS without an answer, and promote a replica. The site asks the
Sentinels for the primary (labcore/connections.py). With `redis_sync` k,
every node refuses writes unless k replicas are connected and at most
MAX_LAG seconds behind (min-replicas-to-write), and the site WAITs for k
replicas after each session write.

Credentials: every node and every Sentinel asks for the cluster's one Redis
password (`requirepass`; `masterauth` on every node, since any may become
a replica; `sentinel auth-pass` for the Sentinels), and the site passes it
to both.
"""

from pathlib import Path

import redis

from deploy import layout
from deploy.errors import DeployError
from deploy.kinds import redis as alone
from deploy.kinds.base import Kind, host_of, where
from deploy.layout import behind
from deploy.processes import port_open, require, running, spawn, wait_for, write_private

SENTINELS = 3
QUORUM = 2
SERVICE = "lab"  # the name the Sentinels give the primary they watch
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
MAX_LAG = 2  # seconds a replica may be behind and still count for min-replicas-to-write


def redis_args(topology, host, primary=None):
    # The full copy travels over the socket both ways, never through a file.
    args = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--repl-diskless-load", "swapdb",
            "--repl-ping-replica-period", "1", "--replica-read-only", "yes"]
    if topology.redis_sync:
        args += ["--min-replicas-to-write", str(topology.redis_sync), "--min-replicas-max-lag", str(MAX_LAG)]
    args += alone.PERSISTENCE[topology.redis_persistence]
    # The address it tells its primary and the Sentinels: its own, as the others reach it.
    args += ["--replica-announce-ip", host]
    if primary:
        args += ["--replicaof", str(primary[0]), str(primary[1])]
    return args


def start_node(cluster, topology, name, port, password, primary=None):
    """A primary or a replica, in a folder of its own. primary: (host, port) of the node to follow."""
    folder = alone.node_folder(cluster, name)
    record = alone.start_redis(port=port, state_dir=cluster.path, password=password, durable=cluster.durable,
                               name=name, folder=folder, args=redis_args(topology, cluster.host(name), primary),
                               **where(cluster, name))
    return {**record, "data": str(folder)}


def start_sentinel(cluster, name, port, primary, password):
    """Start a Sentinel with its own config file (Sentinel rewrites it with what it learns).

    It asks its clients and its peers for the Redis password (`requirepass`),
    and gives it to the nodes it watches (`auth-pass`); the file is 0600.
    primary: (host, port) of the node to watch, the first time.
    """
    state_dir, host = cluster.path, cluster.host(name)
    own = behind(port) if cluster.relays else port
    folder = Path(state_dir) / name
    config = folder / "sentinel.conf"
    if not config.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(config,
            # It listens behind its relay, if the cluster runs relays (deploy/links.py), and announces the relay's port.
            f"port {own}\nbind {host}\nsentinel announce-ip {host}\nsentinel announce-port {port}\n"
            f"dir {folder}\nrequirepass {password}\n"
            f"sentinel monitor {SERVICE} {primary[0]} {primary[1]} {QUORUM}\n"
            f"sentinel auth-pass {SERVICE} {password}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
    binary = require("redis-server", "redis-server")
    (Path(state_dir) / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    record = spawn(cluster.command(name, [binary, str(config), "--sentinel"]),
                   log_path=Path(state_dir) / "logs" / f"{name}.log")
    wait_for(lambda: port_open(own, host) or not running(record), timeout=30, what=f"{name} on {host}:{own}")
    if not running(record):
        raise DeployError(f"{name} exited at start; see: python -m deploy logs {name}")
    return {"port": port, "host": host, **record, "data": str(folder), "password": password}


def sentinel_primary(sentinels):
    """(host, port) of the node the Sentinels (their records) name as primary now, or None if none answers.

    Under a partition each side's Sentinels may name another node: the
    answer of the latest failover (the highest config epoch) wins.
    """
    answers = []
    for record in sentinels:
        try:
            with alone.client(record) as client:
                state = client.sentinel_master(SERVICE)
        except redis.RedisError:
            continue
        answers.append((int(state["config-epoch"]), state["ip"], int(state["port"])))
    if not answers:
        return None
    _, host, port = max(answers)
    return host, port


def wait_ready(replicas, sentinels):
    """Wait until every replica copies the primary and every Sentinel knows the others and every replica."""
    def replicas_in_sync():
        return all(alone.info(record).get("master_link_status") == "up" for record in replicas)

    def sentinels_agree():
        for record in sentinels:
            try:
                with alone.client(record) as client:
                    state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            if state["num-other-sentinels"] < SENTINELS - 1 or state["num-slaves"] < len(replicas):
                return False
        return True

    wait_for(replicas_in_sync, timeout=30, what="the Redis replicas to copy the primary")
    # Sentinels find each other through the primary, announcing themselves every 2 s.
    wait_for(sentinels_agree, timeout=30, what="the Sentinels to know each other and every replica")


def _split(group):
    """(Redis nodes, Sentinels) of a group of this kind's nodes, name -> record each."""
    nodes = {name: record for name, record in group.items() if record["kind"] == "redis"}
    return nodes, {name: record for name, record in group.items() if record["kind"] == "sentinel"}


class Sentinel(Kind):
    """A Redis primary, its replicas, and the Sentinels that promote one of them when it dies."""

    name = "sentinel"
    server = "redis"
    variables = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_SERVICE", "REDIS_SENTINEL_PASSWORD", "REDIS_SYNC")
    stops_first = True
    aliases = ("redis:primary",)
    node_kinds = ("redis", "sentinel")
    relayed = True

    def serves(self, topology):
        return topology.redis == "sentinel"

    def check(self, topology):
        most = layout.MAX_REDIS_REPLICAS
        if not 1 <= topology.redis_replicas <= most:
            raise DeployError(f"--redis-replicas must be between 1 and {most}, not {topology.redis_replicas}")
        alone.check_sync(topology, topology.redis_replicas)

    def nodes(self, topology, port_of):
        return ([(f"redis{n + 1}", "redis", port_of("redis", n)) for n in range(1 + topology.redis_replicas)]
                + [(f"sentinel{n + 1}", "sentinel", port_of("sentinel", n)) for n in range(SENTINELS)])

    def start_all(self, cluster, topology, planned):
        password = self.new_password()
        first = next(port for name, _, port in planned if name == "redis1")
        redis1 = (cluster.host("redis1"), first)
        for name, kind, port in planned:
            if kind == "sentinel":
                record = start_sentinel(cluster, name, port, redis1, password)
            else:
                record = start_node(cluster, topology, name, port, password, None if name == "redis1" else redis1)
            cluster.stores[name] = {"kind": kind, **record}
            cluster.save()
        nodes, sentinels = _split({name: cluster.stores[name] for name, _, _ in planned})
        wait_ready([record for name, record in nodes.items() if name != "redis1"], list(sentinels.values()))

    def restart(self, cluster, topology, name, record):
        """A node comes back as a replica of the Sentinels' primary, unless the Sentinels still name it
        primary (they have not noticed it died): then it comes back as that primary, empty, and its
        replicas copy the emptiness."""
        if record["kind"] == "sentinel":
            return start_sentinel(cluster, name, record["port"], None, record["password"])
        sentinels = [r for r in cluster.stores.values() if r.get("kind") == "sentinel"]
        primary = sentinel_primary(sentinels)
        follow = primary if primary and primary[1] != record["port"] else None
        return start_node(cluster, topology, name, record["port"], record["password"], follow)

    def role(self, record):
        if record["kind"] == "redis":
            return alone.role(record)
        try:
            with alone.client(record) as client:
                return "sentinel" if client.ping() else "down"
        except redis.RedisError:
            return "down"

    def url(self, record):
        return alone.url(record)

    def env(self, topology, group):
        nodes, sentinels = _split(group)
        return {
            "REDIS_URL": alone.url(next(iter(nodes.values()))),
            "REDIS_SENTINELS": ",".join(f"{host_of(r)}:{r['port']}" for r in sentinels.values()),
            "REDIS_SERVICE": SERVICE,
            "REDIS_SENTINEL_PASSWORD": next(iter(sentinels.values()))["password"],
            "REDIS_SYNC": str(topology.redis_sync),
        }

    def resolve(self, alias, topology, group):
        nodes, sentinels = _split(group)
        primary = sentinel_primary(sentinels.values())
        found = [name for name, record in nodes.items() if primary and record["port"] == primary[1]]
        if not found:
            raise DeployError("no redis node is primary now; see: python -m deploy status")
        return found[0]


KIND = Sentinel()
