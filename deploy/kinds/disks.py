"""A store node's data folder on the power-loss file system (deploy/powerloss.py), with `up --power-loss`.

The folder is the mount point; the disk behind it (the backing folder) is
`NAME.disk` in the state folder, which only the file system's process
(root) reads, whatever user the store runs as. The mount outlives the
store's process: a node killed and started again (a crash, or the power
loss itself) finds it as it left it, or as the power loss left it. The
mount's record is the node record's `disk`; `release` unmounts it and
removes the disk once the node is stopped for good (`down`).
"""

import shutil
from pathlib import Path

from deploy import powerloss
from deploy.processes import running


def place(cluster, name, folder, *, owner=None):
    """{"disk": the mount's record} with `folder` mounted over a disk of its own, or {} without --power-loss.

    A node started again keeps the mount it has. owner: who owns the disk's
    top folder, which the mount point shows (PostgreSQL wants its own, 0700).
    """
    if not cluster.topology.get("power_loss"):
        return {}
    kept = cluster.stores.get(name, {}).get("disk")
    if kept and running(kept) and powerloss.mounted(folder):
        return {"disk": kept}
    backing = Path(cluster.path) / f"{name}.disk"
    backing.mkdir(mode=0o700, exist_ok=True)
    if owner:
        shutil.chown(backing, owner, owner)
    return {"disk": powerloss.mount(backing, folder, control=Path(cluster.path) / f".{name}.powerloss",
                                    log_path=Path(cluster.path) / "logs" / f"{name}.powerloss.log")}


def release(record):
    """Unmount the node's disk, if it has one (its store stopped first), and remove the disk's folders."""
    disk = record.get("disk")
    if disk:
        powerloss.unmount(disk)
        shutil.rmtree(disk["backing"], ignore_errors=True)
        shutil.rmtree(powerloss.trash_of(disk["backing"]), ignore_errors=True)
