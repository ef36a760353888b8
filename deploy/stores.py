"""The kinds of store server a configuration can need, each a private process on loopback.

One row per kind in KINDS: how to start it, how to stop it, and the setting
that points the site at it. Which kinds a configuration needs is the
registry's answer (labcore/registry.py).

Each store answers the site alone: Redis and PostgreSQL ask for a password
generated per cluster and kind (`new_password`), recorded with each node in
the 0600 cluster.json and handed to the site inside the URL; etcd's members
take only a client certificate of their cluster's own authority
(deploy/etcd.py), whose files the site is given (ETCD_CA, ETCD_CERT,
ETCD_KEY); memcached listens on a UNIX socket only the site's user can
open; as root, memcached and PostgreSQL run as users of their own.

etcd is a kind too, but its members start together as one cluster
(deploy/replication.py, deploy/etcd.py); its row starts a cluster of one,
for the benchmarks' private servers.

Redis runs without persistence: like a cache node that dies, a restarted
Redis comes back empty. That is the store's own failure mode the lab shows.
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy import etcd
from deploy.processes import PRIVATE_UMASK, DeployError, port_open, require, spawn, stop, wait_for, write_private
from deploy.sizing import POSTGRES_MAX_CONNECTIONS

LOOPBACK = "127.0.0.1"


def new_password():
    """A store's password, generated per cluster like SECRET_KEY; URL-safe, so it rides in the site's URL."""
    return secrets.token_urlsafe(32)


def start_redis(*, port, state_dir, password, durable=True, name="redis", folder=None, args=(), host=LOOPBACK,
                command=None):
    """Start Redis on host (loopback by default), with a password (`requirepass`).

    The password is in a 0600 configuration file, not on the command line,
    which every user can read in /proc. Replicas use the same password
    (`masterauth`), so it is one per kind and cluster; every node has both,
    since Sentinel may turn any node into a replica. folder: its `dir`
    (default the state folder); args: more options that are no secret,
    e.g. --replicaof (deploy/replication.py). command: (argv, user) -> the
    argv that runs it where it lives (inside a namespace: deploy/netns.py).
    """
    binary = require("redis-server", "redis-server")
    config = Path(state_dir) / f"redis-{port}.conf"
    write_private(config, "\n".join([
        f"port {port}", f"bind {host}", 'save ""', "appendonly no", f'dir "{folder or state_dir}"',
        f"requirepass {password}", f"masterauth {password}", "",
    ]))
    record = _start(name, (command or _here)([binary, str(config), *args], None), state_dir,
                    ready=lambda: port_open(port, host), where=f"{host}:{port}")
    return {"port": port, "host": host, **record, "password": password}


def start_memcached(*, port, state_dir, password=None, durable=True):
    """Start memcached on a UNIX socket that only the site's user can open; no TCP at all.

    memcached's only authentication, SASL, needs the binary protocol, which
    pymemcache lacks: the socket's permissions (0700, in a 0700 folder) are
    the lock instead, so `port` and `password` are unused. As root it runs
    as `memcache` (or `nobody`), never as root, and root's site can still
    open the socket.
    """
    binary = require("memcached", "memcached")
    user = _unprivileged_user("memcache", "nobody") if os.geteuid() == 0 else None
    folder = _private_folder("memcached", user)
    socket_path = folder / "memcached.sock"
    argv = [binary, "-s", socket_path, "-a", "0700", "-U", "0", "-m", "256", *(["-u", user] if user else [])]
    record = _start("memcached", argv, state_dir, ready=lambda: _socket_open(socket_path), where=str(socket_path))
    return {**record, "port": None, "socket": str(socket_path), "data": str(folder)}


def start_postgres(*, port, state_dir, password, durable=True, name="postgres", config="", host=LOOPBACK,
                   clients=None, command=None):
    """Start a fresh private PostgreSQL cluster, scram-sha-256 passwords everywhere.

    The site's role `lab` is no superuser: it logs in with `password` and
    owns the database `lab`, which is all a migration needs. The role
    `replicator` streams WAL to standbys and runs deploy's failover (watch
    replication, reload, promote), with a password of its own, recorded as
    "replication_password"; the site never gets it. The superuser's
    password is made, used once to create these roles, and forgotten.
    PostgreSQL refuses to run as root, so as root it runs as `postgres`,
    with its data in a folder of its own under /var/tmp: the state folder's
    parents may be closed to other users. `durable=False` turns fsync off,
    which loses acknowledged writes on an OS crash: for benchmarks only.
    config: lines for postgresql.conf (replication settings, which ALTER
    SYSTEM may change later: a -c option would override it). host: the
    address it listens on; clients: the network its clients and standbys
    come from (default host alone); command: as for start_redis.
    """
    user = postgres_user()
    folder = _private_folder(name, user)
    data = folder / "data"
    admin_password = new_password()
    password_file = folder / "initdb-password"
    write_private(password_file, admin_password + "\n")
    if user:
        shutil.chown(password_file, user)
    done = subprocess.run(
        [postgres_bin("initdb"), "-D", data, "-U", "postgres", f"--pwfile={password_file}",
         "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", *([] if durable else ["--no-sync"])],
        capture_output=True, text=True, timeout=120, user=user, umask=PRIVATE_UMASK,
    )
    password_file.unlink()
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise DeployError(f"initdb failed: {done.stderr.strip().splitlines()[-1]}")
    _only_replicator_replicates(data / "pg_hba.conf", clients or f"{host}/32")
    if config:
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(config)
    record = {**run_postgres(folder, port=port, state_dir=state_dir, name=name, durable=durable, host=host,
                             command=command),
              "password": password, "replication_password": new_password()}
    try:
        _create_roles(host, port, admin_password, password, record["replication_password"])
    except BaseException:
        stop(record, sig=signal.SIGINT)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


def _only_replicator_replicates(hba, clients):
    """initdb lets every role ask for replication; only `replicator` may (it alone has REPLICATION).

    clients: the network the site and the standbys come from; initdb's own
    lines already let loopback in.
    """
    lines = [line for line in hba.read_text().splitlines() if not line.startswith(("local replication",
                                                                                      "host replication"))]
    extra = [] if clients.startswith("127.") else [f"host all all {clients} scram-sha-256"]
    hba.write_text("\n".join([*lines, *extra, f"host replication {REPLICATION_ROLE} {clients} scram-sha-256",
                              f"host replication {REPLICATION_ROLE} 127.0.0.1/32 scram-sha-256", ""]))


def postgres_bin(program):
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise DeployError("PostgreSQL is not installed; install it with: apt-get install -y postgresql")
    return Path(initdb[-1]).parent / program


def postgres_user():
    return "postgres" if os.geteuid() == 0 else None


def postgres_folder(name):
    """A new, empty 0700 folder for a node's files (its data in `data`), owned by PostgreSQL's user."""
    return _private_folder(name, postgres_user())


def postgres_data(record):
    """The data directory of a PostgreSQL node's record."""
    return Path(record["data"]) / "data"


def run_postgres(folder, *, port, state_dir, name="postgres", durable=True, host=LOOPBACK, command=None):
    """Start postgres on the data directory in folder, listening on host; return its record: port, host, pid,
    started, data."""
    data = Path(folder) / "data"
    argv = [postgres_bin("postgres"), "-D", data, "-p", str(port), "-k", data,
            "-c", f"listen_addresses={host}", *([] if durable else ["-c", "fsync=off"]),
            # The default, 100, is less than 16 instances keep open (deploy/sizing.py); a
            # standby needs as many, since it may be promoted.
            "-c", f"max_connections={POSTGRES_MAX_CONNECTIONS}"]
    if command:
        record = _start(name, command(argv, postgres_user()), state_dir, ready=lambda: port_open(port, host),
                        where=f"{host}:{port}")
    else:
        record = _start(name, argv, state_dir, ready=lambda: port_open(port, host), where=f"{host}:{port}",
                        user=postgres_user())
    return {"port": port, "host": host, **record, "data": str(folder)}


def _here(argv, user):
    return argv


def _create_roles(host, port, admin_password, password, replication_password):
    """As the superuser, once: the site's role and database, and the replication role."""
    import psycopg
    from psycopg import sql

    def connect():
        try:
            return psycopg.connect(host=host, port=port, user="postgres", password=admin_password,
                                   dbname="postgres", autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            # Its port opens before it accepts logins.
            if "starting up" in str(exc):
                return None
            raise

    site, replicator = sql.Identifier(POSTGRES_ROLE), sql.Identifier(REPLICATION_ROLE)
    with wait_for(connect, timeout=30, what=f"PostgreSQL on port {port} to accept logins") as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(site, sql.Literal(password)))
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(site, site))
        # What deploy's failover needs and no more (deploy/replication.py): stream WAL, see
        # pg_stat_replication, set who is synchronous and whom to follow, reload, promote.
        connection.execute(sql.SQL("CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
            replicator, sql.Literal(replication_password)))
        connection.execute(sql.SQL("GRANT pg_monitor TO {}").format(replicator))
        connection.execute(sql.SQL("GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names, primary_conninfo "
                                   "TO {}").format(replicator))
        for function in ("pg_reload_conf()", "pg_promote(boolean, integer)"):
            connection.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), replicator))


POSTGRES_ROLE = "lab"  # the site's role, and its database
REPLICATION_ROLE = "replicator"  # standbys stream as it; deploy fails over as it


def postgres_url(record):
    return f"postgres://{POSTGRES_ROLE}:{record['password']}@{host_of(record)}:{record['port']}/{POSTGRES_ROLE}"


def host_of(record):
    """The address a store node's record listens on: loopback for a record older than namespaces."""
    return record.get("host") or LOOPBACK


def _unprivileged_user(*names):
    for name in names:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DeployError(f"none of the users {', '.join(names)} exists to run a store without root")


def _private_folder(name, user):
    """A new 0700 folder for a store's files, owned by the user it runs as.

    Under /var/tmp, not in the state folder: as root the store runs as
    another user, who may not pass the state folder's parents, and a UNIX
    socket's path must stay short (108 bytes).
    """
    folder = Path(tempfile.mkdtemp(prefix=f"stateful-lab-{name}-", dir="/var/tmp"))
    if user:
        shutil.chown(folder, user)
    return folder


def _socket_open(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def _start(name, argv, state_dir, *, ready, where, user=None):
    """Start a store and wait until ready() is true; return its process's record: pid and start time."""
    (Path(state_dir) / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    record = spawn(argv, log_path=Path(state_dir) / "logs" / f"{name}.log", user=user)
    try:
        wait_for(ready, timeout=30, what=f"{name} on {where}")
    except DeployError:
        stop(record)
        raise
    return record


@dataclass(frozen=True)
class Kind:
    start: Callable  # (port, state_dir, password, durable) -> record: {"port", "pid", "started"}, maybe "data"
    variable: str  # the site setting that points at it
    url: Callable  # record -> that setting's value
    stop_signal: int = signal.SIGTERM
    every_node: bool = False  # the setting lists every node's value, comma-separated (etcd's members)
    more: Callable = lambda record: {}  # record -> further settings it needs (etcd's certificate files)


KINDS = {
    "redis": Kind(start_redis, "REDIS_URL",
                  lambda record: f"redis://:{record['password']}@{host_of(record)}:{record['port']}/0"),
    "memcached": Kind(start_memcached, "MEMCACHED_URL", lambda record: f"unix:{record['socket']}"),
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
    "postgres": Kind(start_postgres, "DATABASE_URL", postgres_url,
                     stop_signal=signal.SIGINT),
    # A cluster's members start together (deploy/replication.py); start_alone is a cluster of one.
    "etcd": Kind(etcd.start_alone, "ETCD_ENDPOINTS", lambda record: etcd.endpoints([record]), every_node=True,
                 more=etcd.site_settings),
}
