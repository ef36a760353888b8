"""Store topologies: a server alone, or replicated with a way to fail over.

A kind of server (deploy/stores.py) says how to run one node; a topology
says how many nodes there are and who follows whom:

- Redis `single`: one node, `redis1`. Redis `sentinel`: a primary `redis1`,
  replicas `redis2`.. following it, and three Sentinels (`sentinel1`..) that
  watch it, agree (quorum 2) that it is down after DOWN_AFTER_MS without an
  answer, and promote a replica. The site asks the Sentinels for the primary
  (labcore/connections.py). With `redis_sync` k, every node refuses writes
  unless k replicas are connected and at most MAX_LAG seconds behind
  (min-replicas-to-write), and the site WAITs for k replicas after each
  session write.
- Redis `cluster`: `redis_shards` primaries, each with one replica, sharing
  the hash slots; the nodes fail over among themselves (deploy/rediscluster.py).
- PostgreSQL: a primary `pg1` and `pg_standbys` standbys, each a
  pg_basebackup of it, streaming its WAL. `pg_sync` is `off` (asynchronous)
  or "ANY k" / "FIRST k": synchronous_standby_names, with
  synchronous_commit=on, so a commit returns once k standbys have flushed
  it. Nothing promotes on its own: `promote` does (the standby that
  received the most WAL).
- etcd: `etcd_members` members (3, 5 or 7), `etcd1`.., started together as
  one Raft cluster (deploy/etcd.py). They elect their own leader; the site
  is given every member and any of them serves.

Every node is named; `redis:primary`, `pg:primary` and `etcd:leader` name
whichever node is the primary (the leader) now, asked of the stores
themselves, never remembered.

Credentials: every Redis node and every Sentinel asks for the cluster's one
Redis password (`requirepass`; `masterauth` on every node, since any may
become a replica; `sentinel auth-pass` for the Sentinels), and the site
passes it to both. Standbys stream as the PostgreSQL role `replicator`
(deploy/stores.py), with its own password, which deploy also uses to watch,
reload and promote; each node's record carries the passwords, so a node
started again gets the same ones.
"""

import re
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import psutil
import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy import etcd, rediscluster, stores
from deploy.processes import (
    PRIVATE_UMASK,
    DeployError,
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

SENTINELS = 3
QUORUM = 2
SERVICE = "lab"  # the name the Sentinels give the primary they watch
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
MAX_LAG = 2  # seconds a replica may be behind and still count for min-replicas-to-write
# Seconds a PostgreSQL commit may wait for its synchronous standbys before the site cancels the
# wait and answers 503 (labcore/postgresql/base.py): a healthy commit waits milliseconds.
COMMIT_TIMEOUT = 2
MAX_REDIS_REPLICAS = len(range(30, 40)) - 1
# Cluster nodes need a bus port each too, from the block's free offsets 2 to 9 (deploy/layout.py).
MAX_CLUSTER_NODES = min(len(range(30, 40)), len(range(2, 10)))
MAX_PG_STANDBYS = len(range(45, 52)) - 1
PREFIX = {"redis": "redis", "postgres": "pg"}  # node names; other kinds keep their kind's name


@dataclass(frozen=True)
class Topology:
    """How each kind of server is laid out: saved in the cluster record."""

    redis: str = "single"  # or "sentinel", or "cluster"
    redis_replicas: int = 2  # with sentinel
    redis_sync: int = 0  # replicas that must confirm a session write (WAIT) and be connected to write
    redis_shards: int = 3  # with cluster: primaries, each with one replica
    pg_standbys: int = 0
    pg_sync: str = "off"  # or "ANY k" / "FIRST k"
    etcd_members: int = 3

    def check(self):
        if self.redis not in ("single", "sentinel", "cluster"):
            raise DeployError(f"--redis {self.redis!r} is not one of: single, sentinel, cluster")
        if self.redis == "cluster":
            rediscluster.check(self.redis_shards, MAX_CLUSTER_NODES)
        # The replicas a session write can wait for: Sentinel's, or each shard's own in a cluster.
        replicas = {"sentinel": self.redis_replicas, "cluster": rediscluster.REPLICAS_PER_SHARD}.get(self.redis, 0)
        if self.redis == "sentinel" and not 1 <= replicas <= MAX_REDIS_REPLICAS:
            raise DeployError(f"--redis-replicas must be between 1 and {MAX_REDIS_REPLICAS}, not {replicas}")
        if not 0 <= self.redis_sync <= replicas:
            raise DeployError(f"--redis-sync {self.redis_sync} needs that many replicas (--redis sentinel "
                              f"--redis-replicas, or --redis cluster: one a shard), and the cluster has {replicas}")
        if not 0 <= self.pg_standbys <= MAX_PG_STANDBYS:
            raise DeployError(f"--pg-standbys must be between 0 and {MAX_PG_STANDBYS}, not {self.pg_standbys}")
        method, count = pg_sync_parts(self.pg_sync)
        if method and not 1 <= count <= self.pg_standbys:
            raise DeployError(f"--pg-sync {self.pg_sync!r} needs at least {count or 1} standbys "
                              f"(--pg-standbys), and the cluster has {self.pg_standbys}")
        if self.etcd_members not in etcd.SIZES:
            raise DeployError(f"--etcd-members must be one of {', '.join(map(str, etcd.SIZES))}, "
                              f"not {self.etcd_members}")
        return self

    @classmethod
    def of(cls, record):
        return cls(**(record or {}))

    def record(self):
        return asdict(self)


def pg_sync_parts(text):
    """ "off" -> (None, 0); "ANY 2" -> ("ANY", 2); DeployError otherwise."""
    if text.strip().lower() in ("off", "async", ""):
        return None, 0
    method, _, count = text.strip().upper().partition(" ")
    if method not in ("ANY", "FIRST") or not count.strip().isdigit():
        raise DeployError(f"--pg-sync wants off, \"ANY k\" or \"FIRST k\", not {text!r}")
    return method, int(count)


def nodes(kinds, topology, port_of):
    """[(name, kind, port)] of every store node, primaries first; port_of(kind, index) -> port."""
    planned = []
    for kind in kinds:
        if kind == "redis":
            count = 1 + (topology.redis_replicas if topology.redis == "sentinel" else 0)
            if topology.redis == "cluster":
                count = rediscluster.node_count(topology.redis_shards)
            planned += [(f"redis{n + 1}", "redis", port_of("redis", n)) for n in range(count)]
            if topology.redis == "sentinel":
                planned += [(f"sentinel{n + 1}", "sentinel", port_of("sentinel", n)) for n in range(SENTINELS)]
        elif kind == "postgres":
            planned += [(f"pg{n + 1}", "postgres", port_of("postgres", n)) for n in range(1 + topology.pg_standbys)]
        elif kind == "etcd":
            planned += [(f"etcd{n + 1}", "etcd", port_of("etcd", n)) for n in range(topology.etcd_members)]
        else:
            planned.append((kind, kind, port_of(kind, 0)))
    return planned


# Starting


def start_all(cluster, kinds, port_of):
    """Start every node of these kinds, replicas following their primary; record each in cluster.stores."""
    topology = Topology.of(cluster.topology)
    planned = nodes(kinds, topology, port_of)
    # One password per kind and cluster: every node of the kind (replicas, Sentinels) shares it.
    redis_password = stores.new_password()
    redis1 = (cluster.host("redis1"), planned_port(planned, "redis1")) if "redis" in kinds else None
    for name, kind, port in planned:
        if kind == "redis":
            record = start_redis_node(cluster, name, port, redis_password, None if name == "redis1" else redis1)
        elif kind == "sentinel":
            record = start_sentinel(cluster, name, port, redis1, redis_password)
        elif kind == "postgres" and name == "pg1":
            record = stores.start_postgres(port=port, state_dir=cluster.path, password=stores.new_password(),
                                           durable=cluster.durable, name=name, config=postgres_config(name),
                                           **_placed(cluster, name))
            if topology.pg_standbys:
                cluster.stores[name] = {"kind": kind, **record}  # recorded first: `down` stops it if this fails
                cluster.save()
                if _postgres_sql(record, _alter_system("synchronous_standby_names",
                                                       standby_names(topology))) is None:
                    raise DeployError(f"{name} refused synchronous_standby_names; see: python -m deploy logs {name}")
        elif kind == "postgres":
            record = start_standby(cluster, name, port, cluster.stores["pg1"])
        elif kind == "etcd":
            continue  # all at once, below: a member serves only once a majority of them runs
        else:
            record = stores.KINDS[kind].start(port=port, state_dir=cluster.path, password=stores.new_password(),
                                              durable=cluster.durable)
        cluster.stores[name] = {"kind": kind, **record}
        cluster.save()
    if "etcd" in kinds:
        start_etcd(cluster, [port for _, kind, port in planned if kind == "etcd"])
    if topology.redis == "sentinel" and "redis" in kinds:
        _wait_redis_ready(cluster)
    if topology.redis == "cluster" and "redis" in kinds:
        rediscluster.form([cluster.stores[name] for name, kind, _ in planned if kind == "redis"],
                          topology.redis_shards)
    if topology.pg_standbys and "postgres" in kinds:
        pg1 = cluster.stores["pg1"]
        wait_for(lambda: _streaming(pg1) >= topology.pg_standbys, timeout=60,
                 what=f"{topology.pg_standbys} standbys streaming from pg1")
        # Set before the base backups (so every standby has it when promoted), in force only now:
        # earlier, commits would have waited for standbys that did not exist yet.
        _postgres_sql(pg1, "SELECT pg_reload_conf()")


def start_etcd(cluster, ports):
    """Start the etcd members on these ports, data in the state folder; record each once a leader is elected.

    On loopback they share the machine's addresses; in namespaces each
    member has its own address, so its peers' port is etcd's usual 2380.
    """
    network = cluster.net
    if network:
        members = etcd.plan([((network.address(f"etcd{n}"), port), (network.address(f"etcd{n}"), ETCD_PEER_PORT))
                             for n, port in enumerate(ports, start=1)], cluster.path)
        for member in members:
            member["exec"] = network.exec_prefix(member["name"])
    else:
        members = etcd.on_loopback(ports, cluster.path)
    for member in etcd.start_members(members, cluster.path):
        cluster.stores[member["name"]] = {"kind": "etcd", **member}
    cluster.save()


ETCD_PEER_PORT = 2380


def planned_port(planned, name):
    return next(port for node, _, port in planned if node == name)


def _where(cluster, name):
    """Where node `name` runs: its address, and (in a namespace) how to run a command there."""
    inside = {"command": lambda argv, user: cluster.command(name, argv, user)} if cluster.network else {}
    return {"host": cluster.host(name), **inside}


def _placed(cluster, name):
    """_where, and the network a new PostgreSQL's clients and standbys come from (for its pg_hba)."""
    network = cluster.net
    return {**_where(cluster, name), **({"clients": network.subnet} if network else {})}


def start_redis_node(cluster, name, port, password, primary=None):
    """A Redis node alone, or a primary or replica of the Sentinel topology, in a folder of its own.

    primary: (host, port) of the node to follow, for a replica.
    """
    topology = Topology.of(cluster.topology)
    if topology.redis == "cluster":
        return rediscluster.start_node(cluster, name, port, cluster_bus_port(cluster, name), password)
    if topology.redis != "sentinel":
        return stores.start_redis(port=port, state_dir=cluster.path, password=password, durable=cluster.durable,
                                  name=name, **_where(cluster, name))
    folder = cluster.path / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Redis loads a dump.rdb it finds at start, persistence or not: a
    # restarted node must come back as empty as a Redis without disk.
    (folder / "dump.rdb").unlink(missing_ok=True)
    host = cluster.host(name)
    record = stores.start_redis(port=port, state_dir=cluster.path, password=password, durable=cluster.durable,
                                name=name, folder=folder, args=redis_args(topology, host, primary),
                                **_where(cluster, name))
    return {**record, "data": str(folder)}


def cluster_bus_port(cluster, name):
    """A cluster node's bus port: the same offset of the cluster's block for the same node, always."""
    from deploy import layout  # layout imports this module

    return layout.store_port(cluster.port, "redis-bus", int(name.removeprefix("redis")) - 1)


def redis_args(topology, host, primary=None):
    # The full copy travels over the socket both ways, never through a file.
    args = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--repl-diskless-load", "swapdb",
            "--repl-ping-replica-period", "1", "--replica-read-only", "yes"]
    if topology.redis_sync:
        args += ["--min-replicas-to-write", str(topology.redis_sync), "--min-replicas-max-lag", str(MAX_LAG)]
    # The address it tells its primary and the Sentinels: its own, as the others reach it.
    args += ["--replica-announce-ip", host]
    if primary:
        args += ["--replicaof", str(primary[0]), str(primary[1])]
    return args


def start_sentinel(cluster, name, port, primary, password):
    """Start a Sentinel with its own config file (Sentinel rewrites it with what it learns).

    It asks its clients and its peers for the Redis password (`requirepass`),
    and gives it to the nodes it watches (`auth-pass`); the file is 0600.
    primary: (host, port) of the node to watch, the first time.
    """
    state_dir, host = cluster.path, cluster.host(name)
    folder = Path(state_dir) / name
    config = folder / "sentinel.conf"
    if not config.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(config,
            f"port {port}\nbind {host}\nsentinel announce-ip {host}\ndir {folder}\nrequirepass {password}\n"
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
    wait_for(lambda: port_open(port, host) or not running(record), timeout=30, what=f"{name} on {host}:{port}")
    if not running(record):
        raise DeployError(f"{name} exited at start; see: python -m deploy logs {name}")
    return {"port": port, "host": host, **record, "data": str(folder), "password": password}


def _wait_redis_ready(cluster):
    replicas = [r for name, r in _nodes_of(cluster, "redis").items() if name != "redis1"]
    sentinels = list(_nodes_of(cluster, "sentinel").values())

    def replicas_in_sync():
        return all(_redis_info(record).get("master_link_status") == "up" for record in replicas)

    def sentinels_agree():
        for record in sentinels:
            try:
                with _redis(record) as client:
                    state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            if state["num-other-sentinels"] < SENTINELS - 1 or state["num-slaves"] < len(replicas):
                return False
        return True

    wait_for(replicas_in_sync, timeout=30, what="the Redis replicas to copy the primary")
    # Sentinels find each other through the primary, announcing themselves every 2 s.
    wait_for(sentinels_agree, timeout=30, what="the Sentinels to know each other and every replica")


def postgres_config(name):
    return (
        "\n# deploy/replication.py\n"
        f"cluster_name = '{name}'\n"  # a standby's walreceiver reports it as application_name
        "wal_keep_size = '512MB'\n"
        "synchronous_commit = on\n"
        "hot_standby = on\n"
        "wal_log_hints = on\n"
    )


def standby_names(topology):
    method, count = pg_sync_parts(topology.pg_sync)
    return f"{method} {count} (*)" if method else ""


def start_standby(cluster, name, port, primary):
    """A standby: a base backup of the primary (its record), streaming from it as `replicator`.

    Its record carries the primary's passwords: the same roles, copied.
    """
    folder = stores.postgres_folder(name)
    data = folder / "data"
    user = stores.postgres_user()
    try:
        done = subprocess.run(
            [stores.postgres_bin("pg_basebackup"), "-h", stores.host_of(primary), "-p", str(primary["port"]),
             "-U", stores.REPLICATION_ROLE, "-w", "-D", data, "-X", "stream", "--checkpoint=fast",
             *([] if cluster.durable else ["--no-sync"])],
            capture_output=True, text=True, timeout=300, user=user, umask=PRIVATE_UMASK,
            # The password in the environment of this one child, never on a command line.
            env={"PATH": "/usr/bin:/bin", "PGPASSWORD": primary["replication_password"]},
        )
        if done.returncode:
            raise DeployError(f"pg_basebackup for {name} failed: {done.stderr.strip()[-300:]}")
        conf = data / "postgresql.conf"
        conf.write_text(re.sub(r"^cluster_name = .*$", f"cluster_name = '{name}'", conf.read_text(), flags=re.M))
        signal_file = data / "standby.signal"
        signal_file.touch()
        if user:
            shutil.chown(signal_file, user)
        _follow(data, name, primary, primary["replication_password"])
        record = stores.run_postgres(folder, port=port, state_dir=cluster.path, name=name, durable=cluster.durable,
                                     **_where(cluster, name))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {**record, "password": primary["password"], "replication_password": primary["replication_password"]}


def _streaming(primary):
    rows = _postgres_sql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    return rows[0][0] if rows else 0


# Asking the stores


def _redis(record):
    """A client for a Redis node or Sentinel (its record) that gives up after one try: a partitioned node is "down".

    One second: a live node on a busy machine answers within it, and a
    status of a partitioned cluster still costs only a second a node.
    """
    return redis.Redis(host=stores.host_of(record), port=record["port"], password=record["password"],
                       socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True,
                       retry=Retry(NoBackoff(), 0))


def _redis_info(record):
    try:
        with _redis(record) as client:
            return client.info("replication")
    except redis.RedisError:
        return {}


def _postgres_sql(credentials, statement, params=None):
    """Run one statement on a node (its record) in autocommit, as `replicator`.

    Its rows, or None if it does not answer.
    """
    try:
        with psycopg.connect(host=stores.host_of(credentials), port=credentials["port"], user=stores.REPLICATION_ROLE,
                             password=credentials["replication_password"], dbname="postgres", connect_timeout=2,
                             autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    except psycopg.Error:
        return None


def _alter_system(parameter, value):
    # A literal, not a bound parameter: PostgreSQL binds parameters in queries only, never in ALTER SYSTEM.
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(parameter), sql.Literal(value))


def role(kind, record):
    """What the node (its record) says it is now: primary, replica, standby, sentinel, or down;
    an etcd member: leader, follower, candidate (it knows no leader) or down."""
    if kind == "redis":
        answer = _redis_info(record).get("role")
        return {"master": "primary", "slave": "replica"}.get(answer, "down")
    if kind == "sentinel":
        try:
            with _redis(record) as client:
                return "sentinel" if client.ping() else "down"
        except redis.RedisError:
            return "down"
    if kind == "postgres":
        rows = _postgres_sql(record, "SELECT pg_is_in_recovery()")
        return "down" if rows is None else ("standby" if rows[0][0] else "primary")
    if kind == "etcd":
        return etcd.role(record)
    return "primary" if running(record) else "down"


def sentinel_primary(cluster):
    """(host, port) of the node the Sentinels name as primary now, or None if none answers.

    Under a partition each side's Sentinels may name another node: the
    answer of the latest failover (the highest config epoch) wins.
    """
    answers = []
    for record in _nodes_of(cluster, "sentinel").values():
        try:
            with _redis(record) as client:
                state = client.sentinel_master(SERVICE)
        except redis.RedisError:
            continue
        answers.append((int(state["config-epoch"]), state["ip"], int(state["port"])))
    if not answers:
        return None
    _, host, port = max(answers)
    return host, port


def resolve(cluster, name):
    """A node's name; `redis:primary`, `pg:primary` and `etcd:leader` become the node that is it now."""
    if name == "etcd:leader":
        found = etcd.leader(_nodes_of(cluster, "etcd").values())
        if found is None:
            raise DeployError("no etcd member is leader now; see: python -m deploy status")
        return found
    if name not in ("redis:primary", "pg:primary"):
        return name
    kind = "redis" if name == "redis:primary" else "postgres"
    candidates = _nodes_of(cluster, kind)
    if kind == "redis" and Topology.of(cluster.topology).redis == "sentinel":
        primary = sentinel_primary(cluster)
        found = [node for node, record in candidates.items() if primary and record["port"] == primary[1]]
    else:
        found = [node for node, record in candidates.items() if role(kind, record) == "primary"]
    if not found:
        raise DeployError(f"no {kind} node is primary now; see: python -m deploy status")
    return found[0]


def _nodes_of(cluster, kind):
    return {name: record for name, record in cluster.stores.items() if kind_of(name, record) == kind}


def kind_of(name, record):
    return record.get("kind", name)


def rows(cluster):
    """status's `stores`: every node with its role, as the node itself reports it.

    Redis Cluster nodes also have `slots`: the ranges each serves as primary now.
    """
    listed = [
        {"name": name, "kind": kind_of(name, record), "role": (role(kind_of(name, record), record)
         if running(record) else "down").replace("down", "unreachable" if running(record) else "down"),
         "host": record.get("host"), "port": record["port"], "socket": record.get("socket"),
         "pid": record["pid"], "alive": running(record)}
        for name, record in cluster.stores.items()
    ]
    if Topology.of(cluster.topology).redis == "cluster":
        for row in listed:
            if row["kind"] == "redis":
                row["slots"] = rediscluster.slots(cluster.stores[row["name"]]) if row["alive"] else ""
    return listed


# Breaking and mending


def stop_signal(kind):
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
    return stores.KINDS[kind].stop_signal if kind in stores.KINDS else signal.SIGTERM


def signal_tree(pid, sig):
    """Signal a node's process group and every process below it.

    PostgreSQL's backends and helpers each lead a session of their own
    (setsid), outside the postmaster's process group: a pause sent to the
    group alone would freeze the postmaster and leave every connection
    answering.
    """
    signal_group(pid, sig)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.send_signal(sig)
        except psutil.Error:
            pass


def stop_all(cluster):
    """Stop every store node (Sentinels first, so they do not fail over while the rest stop); remove data."""
    order = sorted(cluster.stores.items(), key=lambda item: kind_of(*item) != "sentinel")
    run_all([partial(_stop_node, name, record) for name, record in order])


def _stop_node(name, record):
    if running(record):
        signal_tree(record["pid"], signal.SIGCONT)  # a paused node cannot act on a signal
    stop(record, sig=stop_signal(kind_of(name, record)))
    if "data" in record:
        shutil.rmtree(record["data"], ignore_errors=True)


def kill(cluster, name):
    record = cluster.stores[name]
    if not running(record):
        raise DeployError(f"{name} is not running")
    signal_tree(record["pid"], signal.SIGCONT)
    stop(record, sig=signal.SIGKILL)


def pause(cluster, name, *, resume=False):
    record = cluster.stores[name]
    if not running(record):
        raise DeployError(f"{name} is not running")
    signal_tree(record["pid"], signal.SIGCONT if resume else signal.SIGSTOP)


def start(cluster, name):
    """Start a stopped node again, as what the topology needs it to be now.

    A Redis node comes back as a replica of the Sentinels' primary, unless
    the Sentinels still name it primary (they have not noticed it died):
    then it comes back as that primary, empty, and its replicas copy the
    emptiness. A PostgreSQL node that another one replaced as primary comes
    back as a standby of the new one, from a fresh base backup, never as a
    second primary.
    """
    record = cluster.stores[name]
    kind = kind_of(name, record)
    if running(record):
        raise DeployError(f"{name} is already running (pid {record['pid']})")
    topology = Topology.of(cluster.topology)
    if kind == "redis":
        primary = sentinel_primary(cluster) if topology.redis == "sentinel" else None
        follow = primary if primary and primary[1] != record["port"] else None
        new = start_redis_node(cluster, name, record["port"], record["password"], follow)
    elif kind == "sentinel":
        new = start_sentinel(cluster, name, record["port"], None, record["password"])
    elif kind == "postgres":
        new = _start_postgres_node(cluster, name, record)
    elif kind == "etcd":
        # It rejoins with its data folder, as the member it was.
        new = {**record, **etcd.start_member(record, cluster.path)}
    else:
        if "data" in record:  # memcached's folder: a new one comes with the new process
            shutil.rmtree(record["data"], ignore_errors=True)
        new = stores.KINDS[kind].start(port=record["port"], state_dir=cluster.path, password=record.get("password"),
                                       durable=cluster.durable)
    cluster.stores[name] = {"kind": kind, **new}
    cluster.save()


def _start_postgres_node(cluster, name, record):
    others = {node: r for node, r in _nodes_of(cluster, "postgres").items() if node != name}
    primary = next((r for r in others.values() if role("postgres", r) == "primary"), None)
    credentials = {"password": record["password"], "replication_password": record["replication_password"]}
    again = {"port": record["port"], "state_dir": cluster.path, "name": name, "durable": cluster.durable,
             **_where(cluster, name)}
    if primary is None:
        # Nobody replaced it: it recovers its own data and goes on as what it was.
        return {**stores.run_postgres(record["data"], **again), **credentials}
    was_standby = (stores.postgres_data(record) / "standby.signal").exists()
    if was_standby:
        _follow(stores.postgres_data(record), name, primary, record["replication_password"])
        return {**stores.run_postgres(record["data"], **again), **credentials}
    # It was a primary: its WAL may hold commits the new primary never had, so
    # it cannot simply follow. A fresh copy (pg_rewind would copy less).
    shutil.rmtree(record["data"], ignore_errors=True)
    return start_standby(cluster, name, record["port"], primary)


def conninfo(primary, name, replication_password):
    """A standby's primary_conninfo (primary: its record): it streams as `replicator`, named for
    synchronous_standby_names."""
    return (f"host={stores.host_of(primary)} port={primary['port']} user={stores.REPLICATION_ROLE} "
            f"password={replication_password} application_name={name}")


def _follow(data, name, primary, replication_password):
    # postgresql.auto.conf is in the 0700 data folder, like the server's own secrets.
    auto = Path(data) / "postgresql.auto.conf"
    lines = [line for line in auto.read_text().splitlines() if not line.startswith("primary_conninfo")]
    lines.append(f"primary_conninfo = '{conninfo(primary, name, replication_password)}'")
    auto.write_text("\n".join(lines) + "\n")


def promote(cluster, *, force=False):
    """Promote the standby that received the most WAL; the others follow it. Return its name.

    force: even while the old primary runs, as an operator (or a failover
    tool) that cannot see it would: two primaries, the split brain.
    """
    nodes_ = _nodes_of(cluster, "postgres")
    if not nodes_:
        raise DeployError("this cluster has no PostgreSQL")
    live_primary = [n for n, r in nodes_.items() if running(r) and role("postgres", r) == "primary"]
    if live_primary and not force:
        raise DeployError(f"{live_primary[0]} is still a running primary; kill it first "
                          f"(python -m deploy kill pg:primary), or there would be two")
    received = {}
    for node, record in nodes_.items():
        rows_ = _postgres_sql(record, "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn")
        if rows_ and rows_[0][0] is not None:
            received[node] = rows_[0][0]
    if not received:
        raise DeployError("no standby answers; nothing to promote")
    chosen = max(received, key=received.get)
    new = nodes_[chosen]
    _postgres_sql(new, "SELECT pg_promote(true, 60)")
    wait_for(lambda: role("postgres", new) == "primary", timeout=60, what=f"{chosen} to become primary")
    for node in received:
        if node != chosen:
            record = nodes_[node]
            follow = conninfo(new, node, record["replication_password"])
            _postgres_sql(record, _alter_system("primary_conninfo", follow))
            _postgres_sql(record, "SELECT pg_reload_conf()")
    return chosen


def store_env(cluster):
    """The site settings that point the instances at the cluster's stores."""
    env = {}
    topology = Topology.of(cluster.topology)
    for kind in dict.fromkeys(kind_of(n, r) for n, r in cluster.stores.items()):
        if kind not in stores.KINDS:
            continue
        group = _nodes_of(cluster, kind)
        first = next(iter(group.values()))
        env[stores.KINDS[kind].variable] = (",".join(stores.KINDS[kind].url(r) for r in group.values())
                                            if stores.KINDS[kind].every_node else stores.KINDS[kind].url(first))
        env.update(stores.KINDS[kind].more(first))
        if kind == "postgres" and pg_sync_parts(topology.pg_sync)[0]:
            env["DATABASE_COMMIT_TIMEOUT"] = str(COMMIT_TIMEOUT)
        if kind == "postgres" and len(group) > 1:
            # Every node, for libpq to try in turn (target_session_attrs=read-write): the site
            # finds the primary wherever it is, without a restart.
            env["DATABASE_FAILOVER_HOSTS"] = ",".join(f"{stores.host_of(r)}:{r['port']}"
                                                      for r in list(group.values())[1:])
    if topology.redis == "sentinel" and _nodes_of(cluster, "sentinel"):
        env["REDIS_SENTINELS"] = ",".join(f"{stores.host_of(r)}:{r['port']}"
                                       for r in _nodes_of(cluster, "sentinel").values())
        env["REDIS_SERVICE"] = SERVICE
        env["REDIS_SENTINEL_PASSWORD"] = next(iter(_nodes_of(cluster, "sentinel").values()))["password"]
        env["REDIS_SYNC"] = str(topology.redis_sync)
    if topology.redis == "cluster" and _nodes_of(cluster, "redis"):
        env["REDIS_CLUSTER_NODES"] = ",".join(f"127.0.0.1:{r['port']}" for r in _nodes_of(cluster, "redis").values())
        env["REDIS_SYNC"] = str(topology.redis_sync)
    return env


SITE_VARIABLES = ("DATABASE_COMMIT_TIMEOUT", "DATABASE_FAILOVER_HOSTS", "REDIS_SENTINELS", "REDIS_SERVICE",
                  "REDIS_SENTINEL_PASSWORD", "REDIS_SYNC", "REDIS_CLUSTER_NODES", "ETCD_CA", "ETCD_CERT", "ETCD_KEY")
