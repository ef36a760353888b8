"""The store topologies a run may name after '@' (`redis@sentinel-sync1`, `db@pg-any1`), read in one place.

The cluster experiments' configurations (loadtest/experiments/configs.py)
and `bench`'s rows (loadtest/bench/cost.py) both name a store's topology
this way; `topology` turns the name into the database and the
deploy.Topology that `deploy.up` takes, so both start the same clusters
from the same names.
"""

import re

from deploy import cluster as deploy

# What may follow '@': the store topology.
TOPOLOGY_FORMS = {
    "sentinel": "Redis under Sentinel: a primary, 2 replicas, 3 Sentinels; asynchronous",
    "sentinel-sync<k>": "the same, k replicas confirming each session write (--redis-sync k)",
    "cluster": "Redis Cluster: 3 primaries, each with a replica (--redis cluster)",
    "pg": "PostgreSQL, a primary and 2 standbys; asynchronous",
    "pg-any<k>, pg-first<k>": "the same, ANY k or FIRST k standbys confirming each commit (--pg-sync)",
    "patroni": "PostgreSQL under Patroni, a primary and 2 standbys, on 3 etcd members; asynchronous",
    "patroni-first<k>": "the same in Patroni's synchronous mode, k standbys confirming each commit",
}
PG_STANDBYS = 2
REDIS_REPLICAS = 2


def topology(text, name):
    """(database, deploy.Topology) for `name`, what follows '@' in `text` ("" for every store alone).

    ValueError names `text` and the forms a topology may take.
    """
    if not name:
        return "sqlite", deploy.Topology()
    if re.fullmatch("sentinel", name):
        return "sqlite", deploy.Topology(redis="sentinel", redis_replicas=REDIS_REPLICAS)
    if match := re.fullmatch(r"sentinel-sync(\d+)", name):
        chosen = deploy.Topology(redis="sentinel", redis_replicas=REDIS_REPLICAS, redis_sync=int(match[1]))
        return "sqlite", _checked(text, chosen)
    if name == "cluster":
        return "sqlite", deploy.Topology(redis="cluster")
    if name == "pg":
        return "postgres", deploy.Topology(pg_standbys=PG_STANDBYS)
    if match := re.fullmatch(r"pg-(any|first)(\d+)", name):
        chosen = deploy.Topology(pg_standbys=PG_STANDBYS, pg_sync=f"{match[1].upper()} {match[2]}")
        return "postgres", _checked(text, chosen)
    if name == "patroni":
        return "postgres", deploy.Topology(pg_standbys=PG_STANDBYS, pg_ha="patroni")
    if match := re.fullmatch(r"patroni-first(\d+)", name):
        chosen = deploy.Topology(pg_standbys=PG_STANDBYS, pg_ha="patroni", pg_sync=f"FIRST {match[1]}")
        return "postgres", _checked(text, chosen)
    forms = "; ".join(f"{form} ({meaning})" for form, meaning in TOPOLOGY_FORMS.items())
    raise ValueError(f"{text!r}: the topology after '@' is one of: {forms}")


def _checked(text, chosen):
    try:
        return chosen.check()
    except deploy.DeployError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
