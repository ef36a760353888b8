"""Real store servers for the tests: started on free loopback ports, always stopped."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout=10.0, interval=0.05, what="condition"):
    """Poll condition() until it returns a truthy value, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def require(binary, package):
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: apt-get install -y {package}")
    return path


class Server:
    """One store server process on a free port, restartable on the same port."""

    def __init__(self, name, argv_for_port, user=None):
        self.name = name
        self.port = free_port()
        self._argv_for_port = argv_for_port
        self._user = user
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            self._argv_for_port(self.port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=self._user,
        )
        wait_for(lambda: port_open(self.port), what=f"{self.name} on port {self.port}")
        return self

    def stop(self):
        """Kill the server, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self):
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)


def redis_server():
    binary = require("redis-server", "redis-server")
    return Server(
        "redis",
        lambda port: [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )


def memcached_server():
    binary = require("memcached", "memcached")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    return Server("memcached", lambda port: [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", *user])


def postgres_server():
    """A private PostgreSQL cluster in a temporary folder, user `lab`, trust auth.

    PostgreSQL refuses to run as root, so as root it runs as `postgres`.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    bin_dir = os.path.dirname(found[-1])
    data = tempfile.mkdtemp(prefix="lab-postgres-")
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(data, user)
    subprocess.run(
        [f"{bin_dir}/initdb", "-D", data, "-U", "lab", "--auth=trust", "--no-sync"],
        check=True, capture_output=True, timeout=120, user=user,
    )
    server = Server(
        "postgres",
        lambda port: [f"{bin_dir}/postgres", "-D", data, "-p", str(port), "-k", data,
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        user=user,
    )
    server.data_dir = data
    return server
