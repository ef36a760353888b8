"""The scorecard's rows: every session store the registry keeps, and every store topology deploy offers.

Nothing here is a second list of stores: a row per registry store alone
(memory behind sticky, since its sessions live in one instance), then one
per topology form of `topologies.TOPOLOGY_FORMS` on the store whose every
session lives on that kind of server. So a new store or a new topology
form is a new row without an edit here. The structural columns (what must
run beside the site, whether a logout revokes a copied cookie, the
persistence a store restart meets) are read from the same registry row and
deploy Topology the experiments start.
"""

import re
from dataclasses import dataclass

from deploy.cluster import Topology
from labcore import registry
from loadtest.experiments.configs import Config, parse_config
from loadtest.harness.topologies import TOPOLOGY_FORMS

# The store a topology form is shown on: the one whose every session lives on that kind of server. The stores
# that only share it (cached_db's cache, presence in Redis) keep their one row, with the server alone.
TOPOLOGY_STORES = {"redis": "redis", "postgres": "db"}
# deploy/kinds: memcached and etcd keep their data as they always do; the others read it from the Topology.
KEPT_BY_KIND = {"memcached": "nothing on disk: a restarted memcached is empty",
                "etcd": "its Raft log, fsynced before a write is acknowledged"}


@dataclass(frozen=True)
class Row:
    """One configuration of the scorecard: its name is the experiments' SESSIONS[+LB][@TOPOLOGY]."""

    config: Config

    @property
    def name(self):
        return self.config.name

    @property
    def store(self):
        return registry.SESSION_STORES[self.config.sessions]

    @property
    def session_server(self):
        """The kind of server the sessions themselves live on ("" for none: the process, a file, the cookie)."""
        if self.config.sessions == "db":
            return "postgres" if self.config.db == "postgres" else ""
        return self.store.servers[0] if self.store.servers else ""

    @property
    def replicated(self):
        """Whether the sessions' server has copies (Sentinel, Redis Cluster, standbys, etcd's members) a fault can
        fail over to."""
        topology, server = self.config.topology, self.session_server
        return (server == "redis" and topology.redis != Topology().redis) or \
            (server == "postgres" and topology.pg_standbys > 0) or (server == "etcd" and topology.etcd_members > 1)


def rows():
    """Every row, in order: the registry's stores alone, then each topology form on its store."""
    alone = [Row(parse_config(name if row.survives_instance_death else f"{name}+sticky"))
             for name, row in registry.SESSION_STORES.items()]
    placed = []
    for form in TOPOLOGY_FORMS:
        first = re.sub(r"<k>", "1", form.split(",")[0].strip())  # pg-any<k>, pg-first<k> -> pg-any1
        probe = parse_config(f"db@{first}")
        kind = "postgres" if probe.db == "postgres" else "redis"
        placed.append(Row(parse_config(f"{TOPOLOGY_STORES[kind]}@{first}")))
    return alone + placed


def beside(row):
    """What has to run beside the site: each kind of server, what it keeps, and how the topology lays it out."""
    config = row.config
    needs = {"sessions": registry.session_store(config.sessions), "presence": registry.presence_store(config.presence),
             "database": registry.database(config.db)}
    parts = []
    for kind in registry.servers_of(*needs.values()):
        keeps = ["sessions"] if kind == row.session_server else []  # the database's sessions (db)
        keeps += [what for what, needed in needs.items() if kind in needed.servers and what not in keeps]
        parts.append(f"{kind} ({', '.join(keeps)}{_layout(kind, config.topology)})")
    return "; ".join(parts) or "nothing but the instances and HAProxy"


def _layout(kind, topology):
    """How deploy lays out a kind of server in this topology, after its name ("" when it runs alone)."""
    if kind == "redis" and topology.redis == "sentinel":
        confirmed = f"{topology.redis_sync} confirming each session write" if topology.redis_sync else "asynchronous"
        return f": a primary, {topology.redis_replicas} replicas, 3 Sentinels; {confirmed}"
    if kind == "redis" and topology.redis == "cluster":
        return f": {topology.redis_shards} primaries, each with a replica"
    if kind == "postgres" and topology.pg_standbys:
        confirmed = f"{topology.pg_sync} confirming each commit" if topology.pg_sync != "off" else "asynchronous"
        patroni = f", under Patroni on {topology.etcd_members} etcd members" if topology.pg_ha == "patroni" else ""
        return f": a primary, {topology.pg_standbys} standbys{patroni}; {confirmed}"
    if kind == "etcd":
        return f": {topology.etcd_members} members, each write on a majority"
    return ""


def revokes(row):
    """Whether a logout revokes a copied session cookie everywhere, from the registry row."""
    if row.store.revokes_at_logout:
        return "yes: the session is deleted from the store"
    return "no: a copied cookie stays valid until it expires"


def persistence(row):
    """What a restart of the sessions' store keeps, by deploy's settings for this configuration ("" if no server)."""
    kind, topology = row.session_server, row.config.topology
    if kind == "redis":
        return f"Redis persistence {topology.redis_persistence} (deploy's --redis-persistence)"
    if kind == "postgres":
        return f"PostgreSQL synchronous_commit {topology.pg_synchronous_commit} (deploy's --pg-synchronous-commit)"
    return KEPT_BY_KIND.get(kind, "")
