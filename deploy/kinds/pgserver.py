"""A private PostgreSQL server: made with initdb, run, and given the lab's two roles.

Each server answers the site alone: scram-sha-256 passwords everywhere,
the site's role `lab` (no superuser), and `replicator` for standbys and
deploy's failover; as root it runs as `postgres`. The kind, its standbys
and its promote are in deploy/kinds/postgres.py.
"""

import glob
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from deploy.errors import DeployError
from deploy.kinds.base import LOOPBACK, host_of, new_password, private_folder, start_process
from deploy.layout import behind
from deploy.processes import PRIVATE_UMASK, port_open, stop, wait_for, write_private
from deploy.sizing import POSTGRES_MAX_CONNECTIONS


def start_postgres(*, port, state_dir, password, durable=True, name="postgres", config="", host=LOOPBACK,
                   clients=None, command=None, relayed=False):
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
    come from (default host alone); command: (argv, user) -> the argv that
    runs it where it lives (inside a namespace: deploy/netns.py). relayed:
    `port` is its relay's, and it listens behind (deploy/links.py).
    """
    user = postgres_user()
    folder = private_folder(name, user)
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
                             command=command, relayed=relayed),
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
    return private_folder(name, postgres_user())


def postgres_data(record):
    """The data directory of a PostgreSQL node's record."""
    return Path(record["data"]) / "data"


def run_postgres(folder, *, port, state_dir, name="postgres", durable=True, host=LOOPBACK, command=None,
                 relayed=False):
    """Start postgres on the data directory in folder, listening on host; return its record: port, host, pid,
    started, data. relayed: `port` is its relay's, and it listens at layout.behind(port) (deploy/links.py)."""
    data = Path(folder) / "data"
    own = behind(port) if relayed else port
    argv = [postgres_bin("postgres"), "-D", data, "-p", str(own), "-k", data,
            "-c", f"listen_addresses={host}", *([] if durable else ["-c", "fsync=off"]),
            # The default, 100, is less than 16 instances keep open (deploy/sizing.py); a
            # standby needs as many, since it may be promoted.
            "-c", f"max_connections={POSTGRES_MAX_CONNECTIONS}"]
    if command:
        record = start_process(name, command(argv, postgres_user()), state_dir, ready=lambda: port_open(own, host),
                        where=f"{host}:{own}")
    else:
        record = start_process(name, argv, state_dir, ready=lambda: port_open(own, host), where=f"{host}:{own}",
                        user=postgres_user())
    return {"port": port, "host": host, **record, "data": str(folder)}


def _create_roles(host, port, admin_password, password, replication_password):
    """As the superuser, once: the site's role and database, and the replication role."""
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
        # What deploy's failover needs and no more (deploy/kinds/postgres.py): stream WAL, see
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
