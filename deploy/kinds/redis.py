"""Redis alone (`--redis single`): one node, `redis1`; and how every Redis node here is started and asked.

By default Redis runs without persistence: like a cache node that dies, a
restarted Redis comes back empty. That is the store's own failure mode the
lab shows, and every figure before persistence was a choice was measured
so. `--redis-persistence everysec` or `always` turns the append-only file
on (`appendfsync`: fsync once a second, or before each write is answered),
for every Redis node of every layout; `save ""` stays (no snapshots).

Credentials: every node asks for the cluster's one Redis password
(`requirepass`, and `masterauth`, since Sentinel may turn any node into a
replica), kept in a 0600 configuration file, never on a command line,
which every user can read in /proc. The site gets it inside REDIS_URL.
"""

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.errors import DeployError
from deploy.kinds import disks
from deploy.kinds.base import LOOPBACK, Kind, here, host_of, start_process, where
from deploy.layout import behind
from deploy.processes import port_open, require, write_private


def start_redis(*, port, state_dir, password, durable=True, name="redis", folder=None, args=(), host=LOOPBACK,
                command=None, relayed=False):
    """Start Redis on host (loopback by default), with a password (`requirepass`).

    folder: its `dir` (default the state folder); args: more options that
    are no secret, e.g. --replicaof (deploy/kinds/sentinel.py). command:
    (argv, user) -> the argv that runs it where it lives (inside a
    namespace: deploy/netns.py). relayed: `port` is its relay's, which it announces
    to its primary, and it listens at layout.behind(port) (deploy/links.py).
    """
    binary = require("redis-server", "redis-server")
    config = Path(state_dir) / f"redis-{port}.conf"
    own = behind(port) if relayed else port
    write_private(config, "\n".join([
        f"port {own}", *([f"replica-announce-port {port}"] if relayed else []), f"bind {host}",
        'save ""', "appendonly no", f'dir "{folder or state_dir}"',
        f"requirepass {password}", f"masterauth {password}", "",
    ]))
    record = start_process(name, (command or here)([binary, str(config), *args], None), state_dir,
                           ready=lambda: port_open(own, host), where=f"{host}:{own}")
    return {"port": port, "host": host, **record, "password": password}


PERSISTENCE = {
    "none": ["--appendonly", "no"],
    "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "always": ["--appendonly", "yes", "--appendfsync", "always"],
}


def persistence(cluster):
    """The options of --redis-persistence, for every Redis node of the cluster (no secret: on the command line)."""
    return PERSISTENCE[cluster.topology.get("redis_persistence", "none")]


def node_folder(cluster, name):
    """A node's own folder in the state folder, without the dump.rdb an earlier run left.

    Redis loads a dump.rdb it finds at start, persistence or not: a
    restarted node must come back as empty as a Redis without disk.
    """
    folder = cluster.path / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / "dump.rdb").unlink(missing_ok=True)
    return folder


def client(record):
    """A client for a Redis node or Sentinel (its record) that gives up after one try: a partitioned node is "down".

    One second: a live node on a busy machine answers within it, and a
    status of a partitioned cluster still costs only a second a node.
    """
    return redis.Redis(host=host_of(record), port=record["port"], password=record["password"],
                       socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True,
                       retry=Retry(NoBackoff(), 0))


def info(record):
    """The node's INFO replication, or {} if it does not answer."""
    try:
        with client(record) as connection:
            return connection.info("replication")
    except redis.RedisError:
        return {}


def role(record):
    """primary or replica, as the node says; down if it does not answer."""
    return {"master": "primary", "slave": "replica"}.get(info(record).get("role"), "down")


def url(record):
    return f"redis://:{record['password']}@{host_of(record)}:{record['port']}/0"


def primary_of(group):
    """The node of group that says it is primary now; DeployError if none does."""
    found = [name for name, record in group.items() if role(record) == "primary"]
    if not found:
        raise DeployError("no redis node is primary now; see: python -m deploy status")
    return found[0]


def check_sync(topology, replicas):
    """DeployError unless a session write can wait for redis_sync replicas of the `replicas` it has."""
    if not 0 <= topology.redis_sync <= replicas:
        raise DeployError(f"--redis-sync {topology.redis_sync} needs that many replicas (--redis sentinel "
                          f"--redis-replicas, or --redis cluster: one a shard), and the cluster has {replicas}")


class Redis(Kind):
    """One Redis node, `redis1`, with no replica."""

    name = server = "redis"
    variables = ("REDIS_URL",)
    aliases = ("redis:primary",)
    relayed = True

    def serves(self, topology):
        return topology.redis == "single"

    def check(self, topology):
        check_sync(topology, 0)

    def nodes(self, topology, port_of):
        return [("redis1", "redis", port_of("redis", 0))]

    def start_node(self, cluster, name, port, password):
        """In a folder of its own: with --power-loss, on a disk that can lose what was not fsynced."""
        folder = node_folder(cluster, name)
        disk = disks.place(cluster, name, folder)
        try:
            record = start_redis(port=port, state_dir=cluster.path, password=password, durable=cluster.durable,
                                 name=name, folder=folder, args=persistence(cluster),
                                 **where(cluster, name))
        except BaseException:
            disks.release(disk)
            raise
        return {**record, "data": str(folder), **disk}

    def start_alone(self, *, port, state_dir, password, durable=True):
        return start_redis(port=port, state_dir=state_dir, password=password, durable=durable)

    def role(self, record):
        return role(record)

    def url(self, record):
        return url(record)

    def resolve(self, alias, topology, group):
        return primary_of(group)


KIND = Redis()
