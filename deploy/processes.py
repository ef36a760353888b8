"""Start, watch and stop the cluster's processes.

Every process runs in a session of its own, so a signal to its process group
reaches it and all its children (gunicorn's master and its worker alike), and
it outlives the `deploy` command that started it.

A process is recorded as its pid and its start time, and is signalled only
while both still match: after a reboot, or once the process is long gone,
its pid may name an unrelated process, which must never get our signals.

Every process starts with umask 077, and every file deploy writes is 0600
from its creation: the state folder holds SECRET_KEY, the stores'
passwords, the database and the logs, for the site's user alone.
"""

import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

import psutil

from deploy.errors import DeployError


def require(binary, package):
    """Return the path of binary, or say how to install it."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise DeployError(f"{binary} is not installed; install it with: apt-get install -y {package}")
    return path


PRIVATE_UMASK = 0o077


def write_private(path, content, *, owner=None):
    """Write content (text or bytes) to path, 0600, readable by this user (or `owner`) alone from the first byte.

    A symbolic link at path is refused, not followed, and the owner and mode
    are set on the file opened: in a folder another user owns (a PostgreSQL
    node's), that user cannot make root write or hand over another file.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DeployError(f"{path} is a symbolic link; not writing through it") from error
        raise
    with os.fdopen(descriptor, "wb") as out:
        os.fchmod(descriptor, 0o600)  # the file may be older and readable: truncated, then closed
        if owner:
            os.fchown(descriptor, pwd.getpwnam(owner).pw_uid, -1)
        out.write(content.encode() if isinstance(content, str) else content)


def spawn(argv, *, log_path, env=None, cwd=None, user=None):
    """Start argv in its own session, output to log_path; return its record: {"pid", "started"}."""
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        os.fchmod(log.fileno(), 0o600)  # a log kept from an older run may be readable
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            umask=PRIVATE_UMASK,
            start_new_session=True,
        )
    return {"pid": process.pid, "started": start_time(process.pid)}


def _stat(pid):
    """The fields of /proc/<pid>/stat after the command name, or None if pid does not run."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The name (field 2) is in parentheses and may hold spaces and ")".
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def start_time(pid):
    """When pid started, in clock ticks after boot (field 22 of /proc/<pid>/stat), or None."""
    fields = _stat(pid) if pid else None
    return int(fields[19]) if fields else None


def alive(pid, started=None):
    """True if pid runs, is not a zombie waiting to be reaped, and (if given) started at `started`.

    Without `started` any process with this pid counts, so only for a pid
    this process just spawned; a recorded pid is checked with its start time.
    """
    fields = _stat(pid) if pid else None
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def running(record):
    """True if the process a record names ({"pid", "started"}) still runs: the same process, not its pid's heir."""
    started = record.get("started") if record else None
    return started is not None and alive(record.get("pid"), started)


def paused(record):
    """True if the process a record names runs but is stopped (SIGSTOP): it holds its sockets and answers nothing."""
    fields = _stat(record["pid"]) if running(record) else None
    return bool(fields) and fields[0] == "T"


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def signal_tree(pid, sig):
    """Signal a process group and every process below it.

    PostgreSQL's backends and helpers each lead a session of their own
    (setsid), outside the postmaster's process group: a pause sent to the
    group alone would freeze the postmaster and leave every connection
    answering.
    """
    signal_group(pid, sig)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.send_signal(sig)
        except psutil.Error:
            pass


def wait_gone(pid, timeout, started=None):
    """Wait until pid (started at `started`, if given) has exited; return False if it still runs after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, started):
            return True
        time.sleep(0.05)
    return False


def stop(record, sig=signal.SIGTERM, timeout=10):
    """Signal the process group of the process record names; SIGKILL it if it is not gone in time.

    A pid that now names another process (its start time differs) is left
    alone: it is not ours.
    """
    pid = record.get("pid") if record else None
    if not running(record):
        if pid:
            _reap(pid)
        return
    signal_group(pid, sig)
    if not wait_gone(pid, timeout, record["started"]):
        signal_group(pid, signal.SIGKILL)
        wait_gone(pid, 5, record["started"])


def run_all(steps):
    """Call every step, in order, even when one fails; then raise the first failure, the others noted on it.

    Teardown uses it: a process that would not stop must not leave the rest running.
    """
    failures = []
    for step in steps:
        try:
            step()
        except Exception as failure:  # every step runs; the first is raised, the rest noted on it
            failures.append(failure)
    if failures:
        for other in failures[1:]:
            failures[0].add_note(f"also failed: {other!r}")
        raise failures[0]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def port_free(port, host="127.0.0.1"):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(condition, *, timeout, what, interval=0.05):
    """Poll condition() until it is truthy; DeployError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DeployError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
