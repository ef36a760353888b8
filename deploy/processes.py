"""Start, watch and stop the cluster's processes.

Every process runs in a session of its own, so a signal to its process group
reaches it and all its children (gunicorn's master and its worker alike), and
it outlives the `deploy` command that started it.
"""

import os
import shutil
import signal
import socket
import subprocess
import time


class DeployError(Exception):
    """A failure to report to the user in one line."""


def require(binary, package):
    """Return the path of binary, or say how to install it."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise DeployError(f"{binary} is not installed; install it with: apt-get install -y {package}")
    return path


def spawn(argv, *, log_path, env=None, cwd=None, user=None):
    """Start argv in its own session, output to log_path; return its pid."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            start_new_session=True,
        )
    return process.pid


def alive(pid):
    """True if pid runs and is not a zombie waiting to be reaped."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


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


def wait_gone(pid, timeout):
    """Wait until pid has exited; return False if it still runs after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def stop(pid, sig=signal.SIGTERM, timeout=10):
    """Signal pid's process group; SIGKILL it if it is not gone in time."""
    if not alive(pid):
        _reap(pid)
        return
    signal_group(pid, sig)
    if not wait_gone(pid, timeout):
        signal_group(pid, signal.SIGKILL)
        wait_gone(pid, 5)


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
