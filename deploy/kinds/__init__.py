"""The kinds of server deploy runs, one module each, and the one table that names them.

KINDS is the one dispatch table: which kind provides a server the registry
names (labcore/registry.py) in a topology, and which kind a node belongs
to, are asked of its rows (`serves`, `node_kinds`), never of a switch. A
new kind of server is one module with a `Kind` (deploy/kinds/base.py), one
row here and one slot range in deploy/layout.py.

Each store answers the site alone: Redis and PostgreSQL ask for a password
generated per cluster and kind (`Kind.new_password`), recorded with each
node in the 0600 cluster.json and handed to the site inside the URL; etcd's
members take only a client certificate of their cluster's own authority
(deploy/certificates.py), whose files the site is given (ETCD_CA,
ETCD_CERT, ETCD_KEY); memcached listens on a UNIX socket only the site's
user can open; as root, memcached and PostgreSQL run as users of their own.
"""

from deploy.errors import DeployError
from deploy.kinds import etcd, memcached, patroni, postgres, redis, rediscluster, sentinel
from deploy.kinds.base import Kind

__all__ = ["KINDS", "Kind", "servers", "for_server", "for_node"]

# Ordered: the three ways to run Redis first, so that a topology picks one of them.
KINDS = {kind.name: kind for kind in (redis.KIND, sentinel.KIND, rediscluster.KIND, memcached.KIND,
                                      postgres.KIND, patroni.KIND, etcd.KIND)}


def servers():
    """The servers deploy can start, as the registry names them."""
    return list(dict.fromkeys(kind.server for kind in KINDS.values()))


def for_server(server, topology):
    """The kind that provides `server` in this topology."""
    for kind in KINDS.values():
        if kind.server == server and kind.serves(topology):
            return kind
    raise DeployError(f"deploy cannot start {server} servers in this topology")


def for_node(node_kind, topology):
    """The kind a node (its record's `kind`) belongs to in this topology."""
    for kind in KINDS.values():
        if node_kind in kind.node_kinds and kind.serves(topology):
            return kind
    raise DeployError(f"no kind of server runs {node_kind} nodes in this topology")


def alone(server):
    """The kind that starts a server outside any cluster: the row named after the server."""
    return KINDS[server]
