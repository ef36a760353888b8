"""A cluster's topology: how many nodes of each kind of server, and who follows whom.

Saved in the cluster record as a dict. Each field belongs to a kind of
server (deploy/kinds/), which checks it: `check` asks every kind that runs
in this topology, so a new kind brings its own checks.
"""

from dataclasses import asdict, dataclass

from deploy import kinds
from deploy.errors import DeployError

REDIS_LAYOUTS = ("single", "sentinel", "cluster")


@dataclass(frozen=True)
class Topology:
    """How each kind of server is laid out: saved in the cluster record."""

    redis: str = "single"  # or "sentinel" (deploy/kinds/sentinel.py), or "cluster" (deploy/kinds/rediscluster.py)
    redis_replicas: int = 2  # with sentinel
    redis_sync: int = 0  # replicas that must confirm a session write (WAIT) and be connected to write
    redis_shards: int = 3  # with cluster: primaries, each with one replica
    pg_standbys: int = 0
    pg_sync: str = "off"  # or "ANY k" / "FIRST k"
    pg_ha: str = "none"  # promote by hand (deploy/kinds/postgres.py), or "patroni" (deploy/kinds/patroni.py)
    etcd_members: int = 3
    redis_persistence: str = "none"  # or "everysec" / "always": the append-only file (deploy/kinds/redis.py)
    pg_synchronous_commit: str = "on"  # or "off": a commit answers before its WAL is flushed
    power_loss: bool = False  # data folders on the power-loss file system (deploy/kinds/disks.py)

    def check(self):
        """Return self, or raise DeployError naming the first field no kind can run."""
        if self.redis not in REDIS_LAYOUTS:
            raise DeployError(f"--redis {self.redis!r} is not one of: {', '.join(REDIS_LAYOUTS)}")
        if self.redis_persistence not in kinds.redis.PERSISTENCE:
            raise DeployError(f"--redis-persistence {self.redis_persistence!r} is not one of: "
                              f"{', '.join(kinds.redis.PERSISTENCE)}")
        if self.pg_synchronous_commit not in ("on", "off"):
            raise DeployError(f"--pg-synchronous-commit wants on or off, not {self.pg_synchronous_commit!r}")
        if self.power_loss and (self.redis != "single" or self.pg_ha != "none"):
            raise DeployError("--power-loss puts the data of Redis alone (--redis single) and of PostgreSQL "
                              "without Patroni on power-loss disks; not with --redis sentinel or cluster, "
                              "or --pg-ha patroni")
        for kind in kinds.KINDS.values():
            if kind.serves(self):
                kind.check(self)
        return self

    @classmethod
    def of(cls, record):
        return cls(**(record or {}))

    def record(self):
        return asdict(self)
