"""PostgreSQL: a primary `pg1` and `pg_standbys` standbys, each a pg_basebackup of it, streaming its WAL.

`pg_sync` is `off` (asynchronous) or "ANY k" / "FIRST k":
synchronous_standby_names, with synchronous_commit=on, so a commit returns
once k standbys have flushed it. Nothing promotes on its own: `promote`
does (the standby that received the most WAL).

Credentials: the site's role has its own password; standbys stream as the
role `replicator` (deploy/kinds/pgserver.py), with another, which deploy
also uses to watch, reload and promote; each node's record carries both,
so a node started again gets the same ones.
"""

import re
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from deploy import layout, sizing, web
from deploy.errors import DeployError
from deploy.kinds import disks, pgserver
from deploy.kinds.base import Kind, host_of, where
from deploy.processes import PRIVATE_UMASK, running, wait_for

# Seconds a commit may wait for its synchronous standbys before the site cancels the wait and
# answers 503 (labcore/postgresql/base.py): a healthy commit waits milliseconds.
COMMIT_TIMEOUT = 2


def pg_sync_parts(text):
    """ "off" -> (None, 0); "ANY 2" -> ("ANY", 2); DeployError otherwise."""
    if text.strip().lower() in ("off", "async", ""):
        return None, 0
    method, _, count = text.strip().upper().partition(" ")
    if method not in ("ANY", "FIRST") or not count.strip().isdigit():
        raise DeployError(f"--pg-sync wants off, \"ANY k\" or \"FIRST k\", not {text!r}")
    return method, int(count)


def sql_on(credentials, statement, params=None):
    """Run one statement on a node (its record) in autocommit, as `replicator`; its rows, or None if it does
    not answer."""
    try:
        with psycopg.connect(host=host_of(credentials), port=credentials["port"], user=pgserver.REPLICATION_ROLE,
                             password=credentials["replication_password"], dbname="postgres", connect_timeout=2,
                             autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    except psycopg.Error:
        return None


def alter_system(parameter, value):
    # A literal, not a bound parameter: PostgreSQL binds parameters in queries only, never in ALTER SYSTEM.
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(parameter), sql.Literal(value))


def role(record):
    rows = sql_on(record, "SELECT pg_is_in_recovery()")
    return "down" if rows is None else ("standby" if rows[0][0] else "primary")


def streaming(primary):
    rows = sql_on(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    return rows[0][0] if rows else 0


def config(name, synchronous_commit="on"):
    """postgresql.conf's lines for a new primary (its standbys copy them). synchronous_commit off answers a
    commit before its WAL is flushed (a power loss may lose it), and waits for no synchronous standby."""
    return (
        "\n# deploy/kinds/postgres.py\n"
        f"cluster_name = '{name}'\n"  # a standby's walreceiver reports it as application_name
        "wal_keep_size = '512MB'\n"
        f"synchronous_commit = {synchronous_commit}\n"
        "hot_standby = on\n"
        "wal_log_hints = on\n"
    )


def standby_names(topology):
    method, count = pg_sync_parts(topology.pg_sync)
    return f"{method} {count} (*)" if method else ""


def conninfo(primary, name, replication_password):
    """A standby's primary_conninfo (primary: its record): it streams as `replicator`, named for
    synchronous_standby_names."""
    return (f"host={host_of(primary)} port={primary['port']} user={pgserver.REPLICATION_ROLE} "
            f"password={replication_password} application_name={name}")


def follow(data, name, primary, replication_password):
    # postgresql.auto.conf is in the 0700 data folder, like the server's own secrets.
    auto = Path(data) / "postgresql.auto.conf"
    lines = [line for line in auto.read_text().splitlines() if not line.startswith("primary_conninfo")]
    lines.append(f"primary_conninfo = '{conninfo(primary, name, replication_password)}'")
    auto.write_text("\n".join(lines) + "\n")


def placed(cluster, name):
    """where(), and the network a new server's clients and standbys come from (for its pg_hba)."""
    network = cluster.net
    return {**where(cluster, name), **({"clients": network.subnet} if network else {})}


def on_disk(cluster, name, data):
    """With --power-loss, the node's data folder on a disk of its own, PostgreSQL's (deploy/kinds/disks.py)."""
    return disks.place(cluster, name, data, owner=pgserver.postgres_user())


def start_standby(cluster, name, port, primary):
    """A standby: a base backup of the primary (its record), streaming from it as `replicator`.

    Its record carries the primary's passwords: the same roles, copied.
    """
    folder = pgserver.postgres_folder(name)
    data = folder / "data"
    user = pgserver.postgres_user()
    disk = {}
    try:
        disk = on_disk(cluster, name, data)
        done = subprocess.run(
            [pgserver.postgres_bin("pg_basebackup"), "-h", host_of(primary), "-p", str(primary["port"]),
             "-U", pgserver.REPLICATION_ROLE, "-w", "-D", data, "-X", "stream", "--checkpoint=fast",
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
        follow(data, name, primary, primary["replication_password"])
        record = pgserver.run_postgres(folder, port=port, state_dir=cluster.path, name=name,
                                       durable=cluster.durable, **where(cluster, name))
    except BaseException:
        disks.release(disk)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {**record, "password": primary["password"], "replication_password": primary["replication_password"],
            **disk}


class Postgres(Kind):
    name = server = "postgres"
    variables = ("DATABASE_URL", "DATABASE_COMMIT_TIMEOUT", "DATABASE_FAILOVER_HOSTS")
    stop_signal = signal.SIGINT  # PostgreSQL's fast shutdown; SIGTERM would wait for clients
    aliases = ("pg:primary",)
    relayed = True

    def serves(self, topology):
        return topology.pg_ha != "patroni"  # Patroni's nodes are deploy/kinds/patroni.py's

    def check(self, topology):
        if topology.pg_ha not in ("none", "patroni"):
            raise DeployError(f"--pg-ha wants none or patroni, not {topology.pg_ha!r}")
        most = layout.MAX_PG_STANDBYS
        if not 0 <= topology.pg_standbys <= most:
            raise DeployError(f"--pg-standbys must be between 0 and {most}, not {topology.pg_standbys}")
        method, count = pg_sync_parts(topology.pg_sync)
        if method and not 1 <= count <= topology.pg_standbys:
            raise DeployError(f"--pg-sync {topology.pg_sync!r} needs at least {count or 1} standbys "
                              f"(--pg-standbys), and the cluster has {topology.pg_standbys}")

    def check_server(self, server):
        needs = sizing.db_connections(web.concurrency(server))
        if needs > sizing.DB_CONNECTIONS_PER_INSTANCE:
            raise DeployError(
                f"--server {server} may hold {needs} database connections per instance; PostgreSQL is sized for "
                f"{sizing.DB_CONNECTIONS_PER_INSTANCE} ({sizing.MAX_INSTANCES} instances, max_connections "
                f"{sizing.POSTGRES_MAX_CONNECTIONS}): choose gthread:{sizing.THREADS} or fewer threads")

    def nodes(self, topology, port_of):
        return [(f"pg{n + 1}", "postgres", port_of("postgres", n)) for n in range(1 + topology.pg_standbys)]

    def start_all(self, cluster, topology, planned):
        (first, _, port), standbys = planned[0], planned[1:]
        pg1 = pgserver.start_postgres(port=port, state_dir=cluster.path, password=self.new_password(),
                                      durable=cluster.durable, name=first,
                                      config=config(first, topology.pg_synchronous_commit),
                                      mount=lambda data: on_disk(cluster, first, data),
                                      **placed(cluster, first))
        cluster.stores[first] = {"kind": self.name, **pg1}  # recorded first: `down` stops it if the rest fails
        cluster.save()
        if not standbys:
            return
        if sql_on(pg1, alter_system("synchronous_standby_names", standby_names(topology))) is None:
            raise DeployError(f"{first} refused synchronous_standby_names; see: python -m deploy logs {first}")
        for name, kind, port in standbys:
            cluster.stores[name] = {"kind": kind, **start_standby(cluster, name, port, pg1)}
            cluster.save()
        wait_for(lambda: streaming(pg1) >= len(standbys), timeout=60,
                 what=f"{len(standbys)} standbys streaming from {first}")
        # Set before the base backups (so every standby has it when promoted), in force only now:
        # earlier, commits would have waited for standbys that did not exist yet.
        sql_on(pg1, "SELECT pg_reload_conf()")

    def start_alone(self, *, port, state_dir, password, durable=True):
        return pgserver.start_postgres(port=port, state_dir=state_dir, password=password, durable=durable)

    def restart(self, cluster, topology, name, record):
        """A node that another one replaced as primary comes back as a standby of the new one, from a fresh
        base backup, never as a second primary."""
        others = [r for node, r in cluster.stores.items() if r.get("kind") == self.name and node != name]
        primary = next((r for r in others if role(r) == "primary"), None)
        # The credentials, and the disk its data folder stays mounted on (--power-loss).
        credentials = {"password": record["password"], "replication_password": record["replication_password"],
                       **({"disk": record["disk"]} if "disk" in record else {})}
        again = {"port": record["port"], "state_dir": cluster.path, "name": name, "durable": cluster.durable,
                 **where(cluster, name)}
        if primary is None:
            # Nobody replaced it: it recovers its own data and goes on as what it was.
            return {**pgserver.run_postgres(record["data"], **again), **credentials}
        if (pgserver.postgres_data(record) / "standby.signal").exists():
            follow(pgserver.postgres_data(record), name, primary, record["replication_password"])
            return {**pgserver.run_postgres(record["data"], **again), **credentials}
        # It was a primary: its WAL may hold commits the new primary never had, so
        # it cannot simply follow. A fresh copy (pg_rewind would copy less), on a new disk.
        disks.release(record)
        shutil.rmtree(record["data"], ignore_errors=True)
        return start_standby(cluster, name, record["port"], primary)

    def role(self, record):
        return role(record)

    def url(self, record):
        return pgserver.postgres_url(record)

    def env(self, topology, group):
        records = list(group.values())
        env = {"DATABASE_URL": self.url(records[0])}
        if pg_sync_parts(topology.pg_sync)[0]:
            env["DATABASE_COMMIT_TIMEOUT"] = str(COMMIT_TIMEOUT)
        if len(records) > 1:
            # Every node, for libpq to try in turn (target_session_attrs=read-write): the site
            # finds the primary wherever it is, without a restart.
            env["DATABASE_FAILOVER_HOSTS"] = ",".join(f"{host_of(r)}:{r['port']}" for r in records[1:])
        return env

    def resolve(self, alias, topology, group):
        found = [name for name, record in group.items() if role(record) == "primary"]
        if not found:
            raise DeployError("no postgres node is primary now; see: python -m deploy status")
        return found[0]

    def promote(self, cluster, group, *, force=False):
        """Promote the standby that received the most WAL; the others follow it. Return its name.

        force: even while the old primary runs, as an operator (or a failover
        tool) that cannot see it would: two primaries, the split brain.
        """
        if not group:
            raise DeployError("this cluster has no PostgreSQL")
        live_primary = [n for n, r in group.items() if running(r) and role(r) == "primary"]
        if live_primary and not force:
            raise DeployError(f"{live_primary[0]} is still a running primary; kill it first "
                              f"(python -m deploy kill pg:primary), or there would be two")
        received = {}
        for node, record in group.items():
            rows = sql_on(record, "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn")
            if rows and rows[0][0] is not None:
                received[node] = rows[0][0]
        if not received:
            raise DeployError("no standby answers; nothing to promote")
        chosen = max(received, key=received.get)
        new = group[chosen]
        sql_on(new, "SELECT pg_promote(true, 60)")
        wait_for(lambda: role(new) == "primary", timeout=60, what=f"{chosen} to become primary")
        for node in received:
            if node != chosen:
                record = group[node]
                sql_on(record, alter_system("primary_conninfo", conninfo(new, node, record["replication_password"])))
                sql_on(record, "SELECT pg_reload_conf()")
        return chosen


KIND = Postgres()
