"""CPU limits for a cluster, as cgroups: a quota per instance, and a set of CPUs per tier.

`up --cpu-quota 0.25 --site-cpus 0` gives every instance its own cgroup
capped at a quarter of a core (the CFS quota: 25 ms of CPU in every 100 ms
period, the period Kubernetes uses too), all of them on CPU 0, and puts
HAProxy and the stores in a group on the machine's other CPUs. A process
joins its group after it started: deploy moves the whole process group (an
instance's gunicorn master and worker; a store's children), and whatever
it forks later is born inside.

Both interfaces are handled: cgroup v2 (one tree, `cpu.max`, `cpuset.cpus`)
and v1 (a tree per controller: `cpu/` with `cpu.cfs_quota_us`, `cpuset/`
with `cpuset.cpus`). `version()` says which this machine offers. The groups
live under `stateful-lab-<port>` and `remove` deletes them, moving any
process still inside back to the root group first, so nothing is left
behind even after a failed start.
"""

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.errors import DeployError

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
REST = "rest"  # the group of HAProxy and the stores
# The cluster's weight against other processes, 100 times a process's
# default (v1 cpu.shares 1024, v2 cpu.weight 100). A quota is only a
# ceiling: on a machine that other work also keeps busy, a group at the
# default weight competes as one process against each of the others: here
# the instances never reached their quota while the machine was 100 % busy
# with other work. The weight makes the ceiling nearly a floor,
# and keeps HAProxy and the stores (in the same tree) served on theirs.
WEIGHT_FACTOR = 100


def version(root=ROOT):
    """'v2' or 'v1': the cgroup interface this machine offers for CPU quotas and CPU sets; None if neither."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and {"cpu", "cpuset"} <= set(controllers.read_text().split()):
        return "v2"
    if (root / "cpu" / "cpu.cfs_quota_us").exists() and (root / "cpuset" / "cpuset.cpus").exists():
        return "v1"
    return None


def parse_cpus(text):
    """'0', '0-1' or '0,2' -> a sorted list of CPU numbers; DeployError for anything else."""
    cpus = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise DeployError(f"--site-cpus {text!r}: give CPU numbers such as 0, 0-1 or 0,2") from None
    return sorted(cpus)


@dataclass
class Limits:
    """A cluster's CPU limits, saved in its record."""

    name: str  # the groups' folder: stateful-lab-<port>
    version: str
    quota: float | None = None  # cores per instance
    site_cpus: str | None = None  # the instances' CPUs
    rest_cpus: str | None = None  # HAProxy's and the stores': the others

    @classmethod
    def plan(cls, *, port, quota, site_cpus, root=ROOT):
        """Check the request against this machine; None when no limit was asked for."""
        if quota is None and site_cpus is None:
            return None
        found = version(root)
        if found is None:
            raise DeployError(f"no cgroup CPU controller under {root}: --cpu-quota and --site-cpus need "
                              "cgroup v2 with cpu and cpuset, or v1's cpu and cpuset hierarchies")
        if not os.access(root / ("" if found == "v2" else "cpu"), os.W_OK):
            raise DeployError(f"cgroups under {root} are not writable: --cpu-quota and --site-cpus need root")
        if quota is not None and not 0.01 <= quota <= (os.cpu_count() or 1):
            raise DeployError(f"--cpu-quota {quota:g}: give cores per instance, from 0.01 to {os.cpu_count()}")
        rest = None
        if site_cpus is not None:
            online = set(range(os.cpu_count() or 1))
            chosen = set(parse_cpus(site_cpus))
            if not chosen <= online:
                raise DeployError(f"--site-cpus {site_cpus}: this machine has CPUs 0 to {max(online)}")
            others = sorted(online - chosen)
            if not others:
                raise DeployError(f"--site-cpus {site_cpus} leaves no CPU for HAProxy and the stores")
            rest = ",".join(map(str, others))
        return cls(name=f"stateful-lab-{port}", version=found, quota=quota, site_cpus=site_cpus, rest_cpus=rest)

    def record(self):
        return asdict(self)


class Groups:
    """The cgroups of one cluster's Limits: create, join, remove."""

    def __init__(self, limits, root=ROOT):
        self.limits = limits if isinstance(limits, Limits) else Limits(**limits)
        self.root = root

    def _folder(self, controller, group=""):
        base = self.root if self.limits.version == "v2" else self.root / controller
        return base / self.limits.name / group if group else base / self.limits.name

    def create(self):
        limits = self.limits
        if limits.version == "v2":
            _write(self.root / "cgroup.subtree_control", "+cpu +cpuset")
            self._folder("").mkdir(exist_ok=True)
            _write(self._folder("") / "cgroup.subtree_control", "+cpu +cpuset")
            _write(self._folder("") / "cpu.weight", str(100 * WEIGHT_FACTOR))
            return
        self._folder("cpu").mkdir(exist_ok=True)
        _write(self._folder("cpu") / "cpu.shares", str(1024 * WEIGHT_FACTOR))
        cpuset = self._folder("cpuset")
        cpuset.mkdir(exist_ok=True)
        # A v1 cpuset takes no process until its CPUs and memory nodes are set.
        _write(cpuset / "cpuset.cpus", _read(self.root / "cpuset" / "cpuset.cpus"))
        _write(cpuset / "cpuset.mems", _read(self.root / "cpuset" / "cpuset.mems"))

    def join(self, pid, group):
        """Move process group `pid` (all its processes) into `group`: an instance's name, or REST."""
        cpus = self.limits.rest_cpus if group == REST else self.limits.site_cpus
        quota = None if group == REST else self.limits.quota
        targets = self._v2_group(group, cpus, quota) if self.limits.version == "v2" else \
            self._v1_groups(group, cpus, quota)
        for member in _process_group(pid):
            for target in targets:
                try:
                    _write(target / "cgroup.procs", str(member))
                except ProcessLookupError:  # it exited meanwhile
                    pass

    def _v2_group(self, group, cpus, quota):
        folder = self._folder("", group)
        folder.mkdir(exist_ok=True)
        if cpus:
            _write(folder / "cpuset.cpus", cpus)
        if quota:
            _write(folder / "cpu.max", f"{round(quota * PERIOD_US)} {PERIOD_US}")
        return [folder]

    def _v1_groups(self, group, cpus, quota):
        folder = self._folder("cpu", group)
        folder.mkdir(exist_ok=True)
        if quota:
            _write(folder / "cpu.cfs_period_us", str(PERIOD_US))
            _write(folder / "cpu.cfs_quota_us", str(round(quota * PERIOD_US)))
        targets = [folder]
        if cpus:
            folder = self._folder("cpuset", "site" if group != REST else REST)
            if not folder.exists():
                folder.mkdir()
                _write(folder / "cpuset.cpus", cpus)
                _write(folder / "cpuset.mems", _read(self._folder("cpuset") / "cpuset.mems"))
            targets.append(folder)
        return targets

    def throttled(self, group):
        """How often, and for how many seconds, the quota has held back an instance's group so far."""
        folder = self._folder("" if self.limits.version == "v2" else "cpu", group)
        stat = dict(line.split() for line in _read(folder / "cpu.stat").splitlines())
        if self.limits.version == "v2":
            return {"periods": int(stat["nr_throttled"]), "seconds": int(stat["throttled_usec"]) / 1e6}
        return {"periods": int(stat["nr_throttled"]), "seconds": int(stat["throttled_time"]) / 1e9}

    def remove(self):
        """Delete every group, moving any process still inside to the root group first."""
        tops = [self._folder("")] if self.limits.version == "v2" else \
            [self._folder("cpu"), self._folder("cpuset")]
        for top in tops:
            if not top.exists():
                continue
            leaves = [p for p in top.iterdir() if p.is_dir()]
            for folder in [*leaves, top]:
                for pid in _read(folder / "cgroup.procs").split():
                    try:
                        _write(top.parent / "cgroup.procs", pid)
                    except ProcessLookupError:
                        pass
                folder.rmdir()


def _process_group(pgid):
    """Every live process whose process group is pgid."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _read(path):
    return Path(path).read_text().strip()


def _write(path, text):
    with open(path, "w") as out:
        out.write(text)
