"""A power loss for a store: its data folder on a FUSE mount that can drop every write not fsynced.

A SIGKILL keeps the kernel's page cache, so whatever a store wrote before
it died is still read back after a restart. A power loss keeps only what
was fsynced. To show that, a store's data folder is the mount point of the
file system in deploy/unsynced.py (its docstring says what it models and
what it does not): it passes through to a backing folder but keeps unsynced
writes in memory, and power_loss() drops them all at one instant. The
backing folder then holds what a disk would after the power came back, and
the store can be started again on the mount.

Interface, for the code that places a store's folders (one process per mount):

    record = mount("/state/redis1.disk", "/state/redis1.data",
                   control="/state/redis1.powerloss.sock", log_path="/state/redis1.powerloss.log")
    status(record)       # {"unsynced_files", "unsynced_bytes", "uncommitted_namespace_operations"}
    # kill the store's processes (SIGKILL): the power is off for them too, then
    power_loss(record)   # {"files", "bytes_written", "namespace_operations", "not_undone": [...]}
    # start the store again on record["mountpoint"]
    unmount(record)      # syncs, unmounts; a lazy unmount if the process is gone or stuck

`mount` runs `python -m deploy.powerloss --control PATH BACKING MOUNTPOINT`
as root (FUSE's `allow_other` and `default_permissions`: a store running
as another user, such as PostgreSQL, uses the mount with the backing
files' own permissions, and the files it makes are its own). The control
socket (deploy/control.py) takes {"op": "status" | "power_loss" | "sync"}.
The kernel's attribute and name caches are off (timeouts of 0), so nothing
the loss undid is still seen; a file's page cache is dropped on each open.
"""

import argparse
import contextlib
import os
import re
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from deploy import control as control_socket
from deploy import processes
from deploy.processes import DeployError

ROOT = Path(__file__).resolve().parent.parent
WHAT = "the power-loss file system"


def mounted(mountpoint):
    """True if something is mounted at `mountpoint` (also a FUSE mount whose process died)."""
    target = os.fsencode(os.path.realpath(mountpoint))
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            # Raw bytes, but for space, tab, newline and backslash, written as \040, \011, \012, \134.
            point = re.sub(rb"\\([0-7]{3})", lambda escape: bytes([int(escape[1], 8)]), line.split()[4])
            if point == target:
                return True
    return False


def trash_of(backing):
    """The folder beside `backing` where removed files wait until their removal is durable."""
    backing = Path(backing).resolve()
    return backing.with_name(f".{backing.name}.trash")


def mount(backing, mountpoint, *, control, log_path, timeout=20):
    """Mount the file system over `backing` at `mountpoint` (both made if missing) in a process of its own;
    return {"pid", "started", "control", "backing", "mountpoint"} once it is mounted.

    Mount from the host's mount namespace, before the store starts: `ip netns exec` gives the store a
    mount namespace of its own that receives the host's mounts, but a mount made inside it stays there.
    """
    if os.geteuid() != 0:
        raise DeployError("the power-loss file system mounts as root only (FUSE's allow_other)")
    processes.require("fusermount3", "fuse3")
    for folder in (backing, mountpoint):
        Path(folder).mkdir(parents=True, exist_ok=True)
    if mounted(mountpoint):
        raise DeployError(f"{mountpoint} is already a mount point; unmount it first")
    argv = [sys.executable, "-m", "deploy.powerloss", "--control", str(control), str(backing),
            str(mountpoint)]
    record = processes.spawn(argv, log_path=log_path, cwd=ROOT)
    record.update(control=str(control), backing=str(backing), mountpoint=str(mountpoint))

    control_socket.wait_started(record, log_path=log_path, what=WHAT,
                                ready=lambda: mounted(mountpoint) and status(record) is not None,
                                waiting_for=f"{WHAT} at {mountpoint}", timeout=timeout, undo=unmount)
    return record


def request(record, op):
    return control_socket.request(record["control"], {"op": op}, what=WHAT, timeout=30)


def status(record):
    """What a power loss would drop now."""
    return request(record, "status")["unsynced"]


def power_loss(record):
    """Drop every unsynced write and undo every uncommitted namespace operation, at once; return what was lost."""
    return request(record, "power_loss")["lost"]


def sync(record):
    """Make everything durable, as `sync` does."""
    request(record, "sync")


def unmount(record):
    """Unmount cleanly (the file system syncs everything, then its process exits); if the mount is busy,
    or its process is gone or stuck, stop the process and unmount lazily.

    Also after a failure: a mount whose process died stays in the mount table, and every access to it
    fails (ENOTCONN) until it is unmounted. DeployError if it stays mounted.
    """
    mountpoint = record["mountpoint"]

    def unmounted():
        # Busy (EBUSY) while a process has a file open there, e.g. a store killed a moment ago.
        return subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, timeout=30).returncode == 0

    def clean():
        if mounted(mountpoint) and processes.running(record):
            with contextlib.suppress(DeployError):
                processes.wait_for(unmounted, timeout=5, what=f"{mountpoint} to be unmounted", interval=0.2)
                # It may stay blocked reading /dev/fuse after the unmount (seen after a store was killed
                # with files open there): the SIGTERM of the next step ends it, and it syncs as it exits.
                processes.wait_gone(record["pid"], 1, record["started"])

    processes.run_all([
        clean,
        lambda: processes.stop(record),
        lambda: mounted(mountpoint) and subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True),
        lambda: mounted(mountpoint) and subprocess.run(["umount", "-l", mountpoint], capture_output=True),
        lambda: Path(record["control"]).unlink(missing_ok=True),
    ])
    if mounted(mountpoint):
        raise DeployError(f"{mountpoint} is still mounted; try: umount -l {mountpoint}")


# The process.

def _handler(fs):
    def handle(request):
        op = request.get("op")
        if op == "status":
            return {"unsynced": fs.status()}
        if op == "power_loss":
            return {"lost": fs.power_loss()}
        if op == "sync":
            fs.sync_all()
            return {}
        raise ValueError(f"op must be one of status, power_loss, sync; not {op!r}")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(control_socket.answer(handle, line))

    return Handler


def serve(backing, mountpoint, *, control):
    """Serve the mount until it is unmounted or SIGTERM (libfuse's handler unmounts), with its control socket."""
    import mfusepy  # libfuse is loaded on import: only the mount's process needs it

    from deploy.unsynced import UnsyncedFS

    fs = UnsyncedFS(backing, trash_of(backing))
    server = socketserver.ThreadingUnixStreamServer(str(control), _handler(fs))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The kernel has applied the caller's umask to the mode of each create and mkdir: not this process's too.
    # (After the control socket is made, which the umask keeps to this user.)
    os.umask(0)
    try:
        mfusepy.FUSE(fs, str(mountpoint), foreground=True, nothreads=True, allow_other=True,
                     default_permissions=True, attr_timeout=0, entry_timeout=0, negative_timeout=0,
                     fsname="powerloss")
    except RuntimeError as error:
        if str(error) != "8":  # fuse_main's 8: its loop ended on a signal (SIGTERM), after syncing
            raise
    finally:
        server.shutdown()
        server.server_close()
        Path(control).unlink(missing_ok=True)


def main(args=None):
    parser = argparse.ArgumentParser(prog="python -m deploy.powerloss", description=__doc__.split("\n")[0])
    parser.add_argument("--control", required=True, help="the UNIX socket that takes requests")
    parser.add_argument("backing", help="the folder that plays the disk")
    parser.add_argument("mountpoint", help="where the store sees its files")
    options = parser.parse_args(args)
    serve(options.backing, options.mountpoint, control=options.control)


if __name__ == "__main__":
    main()
