"""PostgreSQL under Patroni (`--pg-ha patroni`): nodes pg1.. whose failover is Patroni's, on etcd members of their own.

The nodes are deploy/kinds/patroninodes.py's: each a Patroni process running its own
PostgreSQL, the leader holding a key with a time to live in etcd. The etcd
members are the etcd kind's (deploy/kinds/etcd.py), started before the
nodes (`needs`), with the client certificate the site's etcd sessions use;
a cluster with `--sessions etcd` shares them (Patroni's keys live under
/service/lab/). The nodes keep the postgres kind's slots, names, rows
(`kind` postgres) and site settings: the instances get every node with
target_session_attrs=read-write (site/settings.py), so libpq finds
whichever node is primary now on its next connection, with no extra hop or
process. Each node's REST API listens at its PostgreSQL's port on
127.0.0.2 (no slot of its own), or on Patroni's usual 8008 at the node's
own address with --netns.

Patroni promotes by itself, so `promote` is refused here; `kill pgN` kills
the node (Patroni and its PostgreSQL), `kill pgN --process postgres`
PostgreSQL alone, which Patroni starts again in place.
"""

from dataclasses import asdict

from deploy import layout
from deploy.errors import DeployError
from deploy.kinds import patroninodes
from deploy.kinds.base import LOOPBACK
from deploy.kinds.postgres import Postgres

API_HOST = "127.0.0.2"  # on loopback: each REST API at its PostgreSQL's port number, on this address
API_PORT = 8008  # with --netns, every node having an address of its own: Patroni's default


def command_of(cluster, name):
    """How node `name` is run where it lives: inside its namespace with --netns, else None (here)."""
    return (lambda argv, user: cluster.command(name, argv, user)) if cluster.network else None


class Patroni(Postgres):
    name = "patroni"
    needs = ("etcd",)

    @property
    def node_kinds(self):
        return ("postgres",)

    def serves(self, topology):
        return topology.pg_ha == "patroni"

    def check(self, topology):
        most = layout.MAX_PG_STANDBYS
        if not 0 <= topology.pg_standbys <= most:
            raise DeployError(f"--pg-standbys must be between 0 and {most}, not {topology.pg_standbys}")
        count = patroninodes.sync_count(topology.pg_sync)
        if count and count > topology.pg_standbys:
            raise DeployError(f"--pg-sync {topology.pg_sync!r} needs at least {count} standbys (--pg-standbys), "
                              f"and the cluster has {topology.pg_standbys}")

    def start_all(self, cluster, topology, planned):
        """Every node at once; each recorded once Patroni names one primary and the others run as replicas."""
        members = [r for r in cluster.stores.values() if r.get("kind") == "etcd"]
        if not members:
            raise DeployError("Patroni needs etcd members, and this cluster started none")
        network = cluster.net
        ports = [port for _, _, port in planned]
        if network:
            nodes = patroninodes.plan([(port, API_PORT) for port in ports], members, clients=network.subnet)
            for node in nodes:  # each at its namespace's address, its REST API too
                node["host"] = node["api_host"] = network.address(node["name"])
        else:
            nodes = patroninodes.plan([(port, port) for port in ports], members, host=LOOPBACK, api_host=API_HOST)
        for node in nodes:  # behind its latency relay (deploy/links.py), which took the node's port; not under
            node["relayed"] = cluster.relays  # up --no-relays
        sync = patroninodes.sync_count(topology.pg_sync)
        started = patroninodes.start_cluster(nodes, cluster.path, sync=sync,
                                             command_for=lambda name: command_of(cluster, name))
        for node in started:
            cluster.stores[node["name"]] = {"kind": "postgres", **node}
        cluster.save()

    def start_alone(self, *, port, state_dir, password, durable=True):
        raise DeployError("a PostgreSQL alone has no Patroni; deploy up --pg-ha patroni starts a cluster of them")

    def restart(self, cluster, topology, name, record):
        """The whole node again, with its data: Patroni starts its PostgreSQL, an old primary as a replica of
        the new one (rewound by pg_rewind if its timeline diverged)."""
        sync = patroninodes.sync_count(topology.pg_sync)
        return {**record, **patroninodes.start_node(record, cluster.path, sync=sync, command=command_of(cluster, name))}

    def kill(self, record, process=None):
        if process is None:
            patroninodes.kill_node(record)
        elif process == "postgres":
            patroninodes.kill_postgres_only(record)
        else:
            raise DeployError(f"a node under Patroni has processes patroni and postgres; --process {process!r} "
                              "kills neither (without --process the whole node goes)")

    def stop(self, record):
        patroninodes.remove([record])

    def role(self, record):
        return patroninodes.role(record)

    def row(self, record, alive):
        """Its REST API, and whether etcd names it a synchronous standby: Patroni promotes no other in
        synchronous mode, so a caller waits for one before it kills the primary."""
        seen = patroninodes.members(record) if alive else {}
        return {"api": f"{record['api_host']}:{record['api_port']}",
                "synchronous": seen.get(record["name"]) == "sync_standby"}

    def summary(self, group):
        """"patroni": the settings in force, as etcd holds them (any node that answers), else as configured."""
        for record in group.values():
            try:
                return {"patroni": patroninodes.settings(record)}
            except (OSError, ValueError, KeyError):
                continue
        return {"patroni": asdict(patroninodes.LAB)}

    def resolve(self, alias, topology, group):
        found = patroninodes.primary(list(group.values()))
        if found is None:
            raise DeployError("no postgres node is primary now (Patroni may be failing over); "
                              "see: python -m deploy status")
        return found

    def promote(self, cluster, group, *, force=False):
        raise DeployError("under Patroni (--pg-ha patroni) Patroni promotes a standby by itself once the "
                          "primary's key expires in etcd; kill the primary (deploy kill pg:primary) to see it")


KIND = Patroni()
