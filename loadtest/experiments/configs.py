"""The configurations the cluster experiments run: SESSIONS[+roundrobin|sticky][@TOPOLOGY], and their clusters.

A configuration names a session store, the load balancing in front of the
instances and the store's topology (`memory+sticky`, `redis@sentinel-sync1`,
`db@pg-any1`); `up` starts a cluster of it with the experiments' site
settings, through deploy.cluster like any other client.
"""

from dataclasses import dataclass, field
from pathlib import Path

from deploy import cluster as deploy
from labcore import registry
from loadtest.harness import topologies

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILES = ROOT / "loadtest" / "locustfiles"  # what `locust -f` loads


def matrix(which):
    """The configurations the registry's rows ask for: which is "default" or "quick".

    A store run behind round robin alone is named by itself (`redis`), one
    run behind several load balancings or behind another one by both
    (`memory+roundrobin`, `memory+sticky`), as parse_config reads them.
    """
    names = []
    for row in registry.SESSION_STORES.values():
        lbs = row.experiment if which == "default" else (row.quick_experiment,) if row.quick_experiment else ()
        names += [row.name if lbs == ("roundrobin",) else f"{row.name}+{lb}" for lb in lbs]
    return names


DEFAULT_MATRIX = matrix("default")
QUICK_MATRIX = matrix("quick")
# The store faults' default: the single Redis as the baseline, then the replicated topologies.
STORE_MATRIX = ["redis", "redis@sentinel", "redis@sentinel-sync1", "cached_db@sentinel", "db@pg", "db@pg-any1",
                "signed_cookies@sentinel"]
# Cheap password hashing inside the experiment: a storm of logins after a
# kill should measure the session store, not PBKDF2 (accounts/hashers.py).
# Every limit stays as the site ships it: the users exist beforehand
# (loadtest/harness/accounts.py), so none fails a login for want of an account, and
# the audit reads with a token of its own (loadtest/harness/audit.py).
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}


@dataclass(frozen=True)
class Config:
    name: str
    sessions: str
    lb: str
    presence: str
    db: str = "sqlite"
    topology: deploy.Topology = field(default_factory=deploy.Topology)


def parse_config(text):
    """`memory+sticky` -> memory sessions behind sticky; `redis` -> round robin;
    `redis@sentinel-sync1` -> Redis under Sentinel, one replica confirming each session write.

    SESSIONS[+roundrobin|sticky][@TOPOLOGY], the topology as
    loadtest/harness/topologies.py reads it. Presence is the one the registry
    pairs with the session store.
    """
    head, _, topology_name = text.partition("@")
    sessions, _, lb = head.partition("+")
    lb = lb or "roundrobin"
    if lb not in deploy.LB_CHOICES:
        raise ValueError(f"{text!r}: the load balancing after '+' is one of {', '.join(deploy.LB_CHOICES)}")
    if sessions not in registry.SESSION_STORES:
        raise ValueError(f"{text!r}: the session store is one of {', '.join(registry.SESSION_STORES)}")
    db, topology = topologies.topology(text, topology_name)
    return Config(text, sessions, lb, registry.SESSION_STORES[sessions].presence, db, topology)


def up(config, *, instances, port, state_dir, **options):
    """Start a cluster of this configuration (deploy up), with the experiment's site settings.

    options: more of deploy.up's (CPU limits, durability), or a topology in place of the configuration's.
    """
    return deploy.up(**{"instances": instances, "sessions": config.sessions, "presence": config.presence,
                        "lb": config.lb, "db": config.db, "topology": config.topology, "port": port,
                        "env": SITE_ENV, "state_dir": state_dir, **options})
