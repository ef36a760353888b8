"""PostgreSQL nodes under Patroni, with etcd as the store of the primary's right to be primary.

Each node is a Patroni process that runs its own PostgreSQL. The leader
holds a key in etcd whose lease it renews every `loop_wait` seconds; a
leader that cannot renew it within `retry_timeout` demotes itself, and once
the key expires (`ttl` after its last renewal) a standby takes it and is
promoted: the soft-state write right, in production form. Nothing here
promotes anything: Patroni does.

A node is a dict (saved as it is in a cluster's record): its name (pg1..),
where PostgreSQL listens (`host`, `port`), where Patroni's REST API listens
(`api_port`, same host), its folder under /var/tmp (owned by `postgres` as
root, since PostgreSQL refuses to run as root, like deploy/kinds/pgserver.py's),
the etcd members it uses and the cluster's passwords: `password` for the
site's role `lab`, and the superuser's, the replication role's and the REST
API's, which only Patroni uses. Its config file is 0600, its user's alone.

Patroni runs PostgreSQL in a session of its own (it survives Patroni), so
a node's processes are two process groups: Patroni's and PostgreSQL's.
"""

import json
import os
import secrets
import shutil
import signal
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.kinds import etcd
from deploy.kinds.pgserver import postgres_bin, postgres_folder, postgres_user
from deploy.layout import behind
from deploy.processes import (
    DeployError,
    port_open,
    require,
    run_all,
    running,
    spawn,
    start_time,
    stop,
    wait_for,
    write_private,
)
from deploy.sizing import POSTGRES_MAX_CONNECTIONS

SITE_ROLE = "lab"  # the site's role and database, as deploy/kinds/pgserver.py's PostgreSQL has
SUPERUSER, REPLICATION_ROLE = "postgres", "replicator"
SCOPE = "lab"  # one Patroni cluster per etcd cluster: its keys live under /service/lab/


@dataclass(frozen=True)
class Settings:
    """Patroni's timing, in seconds. Its documented limits: ttl >= 20, loop_wait >= 1, retry_timeout >= 3,
    and loop_wait + 2 * retry_timeout <= ttl (a leader gives up on etcd before its key can expire).

    ttl 20 is the documented minimum: a dead primary's key expires at most
    20 s after its last renewal, then a standby is promoted. loop_wait 2: the
    leader renews every 2 s and a crash is seen within 2 s. retry_timeout 5:
    an etcd or PostgreSQL call may stall 5 s on this busy two-core machine
    before Patroni demotes a leader for it (2 + 2 * 5 = 12 <= 20).
    """

    ttl: int = 20
    loop_wait: int = 2
    retry_timeout: int = 5

    def __post_init__(self):
        if self.ttl < 20 or self.loop_wait < 1 or self.retry_timeout < 3:
            raise DeployError(f"Patroni wants ttl >= 20, loop_wait >= 1 and retry_timeout >= 3, not {self}")
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise DeployError(f"Patroni wants loop_wait + 2 * retry_timeout <= ttl, so that a leader gives up "
                              f"on etcd before its key expires; not {self}")


LAB = Settings()


def sync_count(pg_sync):
    """deploy's --pg-sync: "off" -> None, "FIRST k" -> k (Patroni's synchronous_node_count); "ANY k" refused."""
    method, _, count = pg_sync.strip().partition(" ")
    if method.lower() == "off" and not count:
        return None
    if method.upper() == "ANY":
        raise DeployError('--pg-sync "ANY k" is quorum commit, which Patroni 3.0.2 does not have; use "FIRST k"')
    if method.upper() != "FIRST" or not count.strip().isdigit() or int(count) < 1:
        raise DeployError(f'--pg-sync wants off or "FIRST k" (k >= 1) under Patroni, not {pg_sync!r}')
    return int(count)


def plan(ports, etcd_members, *, host="127.0.0.1", clients=None, api_host=None):
    """Nodes pg1.. of a new cluster, one per (PostgreSQL port, REST API port), using these etcd members.

    clients: the network the site and the other nodes come from (default: host alone).
    api_host: where the REST API listens (default: host).
    """
    secret = {key: secrets.token_urlsafe(32) for key in
              ("password", "superuser_password", "replication_password", "api_password")}
    return [{"name": f"pg{n}", "host": host, "clients": clients or f"{host}/32", "port": port, "api_port": api_port,
             "api_host": api_host or host, "folder": None,
             "etcd": [f"{m['host']}:{m['port']}" for m in etcd_members], "etcd_tls": etcd.client_tls(etcd_members[0]),
             **secret}
            for n, (port, api_port) in enumerate(ports, start=1)]


def config(node, *, ttl, loop_wait, retry_timeout, sync):
    """Patroni's configuration for node, as a dict (written as JSON, which is YAML).

    sync: None (asynchronous) or k, the number of synchronous standbys
    ("FIRST k"). The bootstrap section is read once, by the node that
    initialises the cluster, and kept in etcd: every node then uses it.
    """
    folder = Path(node["folder"])
    address = f"{node['host']}:{node['port']}"
    # A node behind a latency relay (node["relayed"]: deploy/links.py) listens at layout.behind(port), and
    # tells the others (connect_address, in etcd) the relay's port: nothing reaches it past the relay.
    listen = f"{node['host']}:{behind(node['port'])}" if node.get("relayed") else address
    return {
        "scope": SCOPE, "name": node["name"],
        "restapi": {"listen": f"{_api_host(node)}:{node['api_port']}",
                    "connect_address": f"{_api_host(node)}:{node['api_port']}",
                    # Only changes (restart, failover) ask for it; its GETs stay open, as etcd's status does.
                    "authentication": {"username": "patroni", "password": node["api_password"]}},
        "etcd3": {"hosts": node["etcd"], "protocol": "https", **_etcd_tls_copies(folder)},
        "bootstrap": {
            "dcs": {"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout,
                    "synchronous_mode": sync is not None, "synchronous_node_count": sync or 1,
                    "postgresql": {
                        # An old primary's timeline may have diverged: pg_rewind takes it back,
                        # which needs wal_log_hints (or checksums).
                        "use_pg_rewind": True,
                        "parameters": {"wal_log_hints": "on", "max_connections": POSTGRES_MAX_CONNECTIONS,
                                       "password_encryption": "scram-sha-256"}}},
            "initdb": [{"encoding": "UTF8"}, {"auth-host": "scram-sha-256"}, {"auth-local": "scram-sha-256"}],
        },
        "postgresql": {
            "listen": listen, "connect_address": address,
            "data_dir": str(folder / "data"), "bin_dir": str(postgres_bin("postgres").parent),
            "pgpass": str(folder / "pgpass"),
            # A standby's copy starts with a checkpoint; a spread one (pg_basebackup's default) can take minutes
            # once the primary has written a database.
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": node["superuser_password"]},
                "replication": {"username": REPLICATION_ROLE, "password": node["replication_password"]},
                "rewind": {"username": SUPERUSER, "password": node["superuser_password"]},
            },
            "parameters": {"unix_socket_directories": str(folder)},
            "pg_hba": ["local all all scram-sha-256",
                       f"host all all {node['clients']} scram-sha-256",
                       f"host replication {REPLICATION_ROLE} {node['clients']} scram-sha-256"],
        },
    }


def start_cluster(nodes, state_dir, *, settings=LAB, sync=None, command_for=lambda name: None):
    """Start every node; return their records once one is the primary, the others replicas, the site's role
    `lab` and its database exist, and with `sync` k, once Patroni names k synchronous standbys. Whatever
    started is removed if this fails. command_for(name): the node's start_node command."""
    started = []
    try:
        for node in nodes:
            started.append({**node, **start_node(node, state_dir, settings=settings, sync=sync,
                                                 command=command_for(node["name"]))})
        wait_for(lambda: primary(started), timeout=120, what="Patroni's first primary")
        _create_site_role(started, primary(started))
        wait_for(lambda: all(role(n) in ("primary", "replica") for n in started), timeout=120,
                 what="every Patroni node running")
        if sync:
            # Patroni puts synchronous mode in force a loop or two after the standbys stream; until then the
            # primary commits asynchronously, and a cluster handed over as synchronous is not (a split-brain
            # run cut it off that early and lost acknowledged writes: docs/experiments/split-brain.md).
            wait_for(lambda: named_synchronous(started) >= sync, timeout=120,
                     what=f"Patroni to name {sync} synchronous standby(s)")
    except BaseException:
        remove(started)
        raise
    return started


def start_node(node, state_dir, *, settings=LAB, sync=None, command=None):
    """Start (or start again, with its data) one node's Patroni; return {"folder", "pid", "started"} once its
    REST API answers. A new node gets its folder; PostgreSQL is Patroni's to start. command: (argv, user) ->
    the argv that runs it where it lives (inside a namespace: deploy/netns.py)."""
    created = not node["folder"]
    folder = Path(node["folder"] or postgres_folder(node["name"]))
    node = {**node, "folder": str(folder)}
    path = folder / "patroni.json"
    user = postgres_user()
    record = None
    try:
        # etcd answers only its cluster's certificate, whose files are root's: Patroni (as postgres) gets copies.
        for name, source in node["etcd_tls"].items():
            write_private(_etcd_tls_copies(folder)[name], Path(source).read_bytes(), owner=user)
        write_private(path, json.dumps(config(node, sync=sync, **asdict(settings))), owner=user)
        (Path(state_dir) / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
        # None of our PG* settings; /usr/sbin for `ip netns exec` (command).
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C.UTF-8", "HOME": str(folder)}
        log = Path(state_dir) / "logs" / f"{node['name']}.log"
        argv = [require("patroni", "patroni"), str(path)]
        record = (spawn(command(argv, user), log_path=log, env=env, cwd=folder) if command
                  else spawn(argv, log_path=log, env=env, cwd=folder, user=user))
        wait_for(lambda: port_open(node["api_port"], _api_host(node)) or not running(record), timeout=60,
                 what=f"{node['name']}'s Patroni on {_api_host(node)}:{node['api_port']}")
        if not running(record):
            raise DeployError(f"{node['name']}'s Patroni exited at start; see its log, logs/{node['name']}.log")
    except BaseException:
        # A new node's folder holds every password and etcd's client key: it goes with the failed start.
        run_all([lambda: record and kill_node({**node, **record}),
                 lambda: created and shutil.rmtree(folder, ignore_errors=True)])
        raise
    return {"folder": str(folder), **record}


def _etcd_tls_copies(folder):
    """Where a node keeps its copies of etcd's client certificate files, by the names Patroni's etcd3 gives them."""
    return {name: str(Path(folder) / f"etcd-{name}.pem") for name in ("cacert", "cert", "key")}


def _api_host(node):
    return node.get("api_host") or node["host"]


def _get(node, path, timeout=2):
    with urllib.request.urlopen(f"http://{_api_host(node)}:{node['api_port']}/{path}", timeout=timeout) as response:
        return json.load(response)


def role(node):
    """What the node's Patroni says it is now: 'primary', 'replica', 'down' (no answer) or PostgreSQL's state
    while it does not run ('starting', 'stopped', 'crashed', ...). It is the node's own view, as
    deploy/etcd.py's role is a member's: PostgreSQL in recovery or not."""
    try:
        seen = _get(node, "patroni")
    except OSError:
        return "down"
    if seen.get("state") != "running":
        return seen.get("state", "down")
    return "primary" if seen.get("role") in ("master", "primary") else "replica"


def primary(nodes):
    """The name of the one node whose Patroni says it is the primary, or None (none, or more than one)."""
    primaries = [n["name"] for n in nodes if role(n) == "primary"]
    return primaries[0] if len(primaries) == 1 else None


def named_synchronous(nodes):
    """How many standbys the primary's Patroni names synchronous in etcd (0 while there is no one primary)."""
    leader = primary(nodes)
    seen = members(next(n for n in nodes if n["name"] == leader)) if leader else {}
    return sum(role == "sync_standby" for role in seen.values())


def members(node):
    """The cluster as etcd holds it, seen through node: {name: "leader", "sync_standby" or "replica"} for every
    member whose PostgreSQL runs, or {} if node does not answer.

    In synchronous mode Patroni promotes only the standbys etcd names
    synchronous ("sync_standby"); one that streams but is not yet named
    there cannot take over, and until one is named the primary commits
    asynchronously: start_cluster waits for it.
    """
    try:
        seen = _get(node, "cluster")
    except OSError:
        return {}
    return {member["name"]: member["role"] for member in seen["members"] if member.get("state") == "running"}


def settings(node):
    """The settings in force (etcd's copy, which every node follows): {"ttl", "loop_wait", "retry_timeout"}."""
    dynamic = _get(node, "config")
    return {key: dynamic[key] for key in ("ttl", "loop_wait", "retry_timeout")}


def conninfo(nodes, *, dbname=SITE_ROLE, user=SITE_ROLE, password=None):
    """libpq's connection string for every node, read-write: libpq tries each and keeps the primary."""
    hosts = ",".join(n["host"] for n in nodes)
    ports = ",".join(str(n["port"]) for n in nodes)
    return (f"host={hosts} port={ports} dbname={dbname} user={user} password={password or nodes[0]['password']} "
            "target_session_attrs=read-write connect_timeout=3")


def _create_site_role(nodes, name):
    """As the superuser, on the primary, once: the site's role (no superuser) and its database."""
    import psycopg
    from psycopg import sql

    node = next(n for n in nodes if n["name"] == name)
    with psycopg.connect(host=node["host"], port=node["port"], user=SUPERUSER, password=node["superuser_password"],
                         dbname="postgres", autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(SITE_ROLE), sql.Literal(node["password"])))
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(SITE_ROLE), sql.Identifier(SITE_ROLE)))


def postmaster(node):
    """The process record of the node's PostgreSQL postmaster, from its postmaster.pid, or None if none runs."""
    try:
        pid = int((Path(node["folder"]) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        ours = Path(os.readlink(f"/proc/{pid}/cwd")) == Path(node["folder"]) / "data"
    except OSError:
        return None
    return {"pid": pid, "started": start_time(pid)} if ours else None  # a stale file's pid may be another's


def kill_postgres_only(node):
    """SIGKILL the node's PostgreSQL (postmaster and backends, its process group); Patroni starts it again."""
    process = postmaster(node)
    if process is None:
        raise DeployError(f"{node['name']}'s PostgreSQL is not running")
    _kill_group(process)


def kill_node(node):
    """SIGKILL the whole node: Patroni first (so it starts nothing again), then its PostgreSQL."""
    process = postmaster(node)
    stop(node, sig=signal.SIGKILL)
    if process:
        _kill_group(process)


def _kill_group(process):
    """SIGKILL the postmaster's process group (Patroni gave it a session of its own) and wait for it to go."""
    try:
        group = os.getpgid(process["pid"])
    except ProcessLookupError:
        return
    if group == os.getpgid(0):
        raise DeployError(f"PostgreSQL {process['pid']} shares deploy's process group; not killing it")
    if running(process):
        os.killpg(group, signal.SIGKILL)
        wait_for(lambda: not running(process), timeout=10, what=f"PostgreSQL {process['pid']} to exit")


def remove(nodes):
    """Kill every node and delete its folder (data, config, passwords); every node, even if one fails."""
    run_all([step for node in nodes for step in (
        lambda node=node: node.get("pid") and kill_node(node),
        lambda node=node: node.get("folder") and shutil.rmtree(node["folder"], ignore_errors=True))])
