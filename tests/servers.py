"""Real store servers for the tests, on free loopback ports, started by deploy's code.

Each has its own password (Redis, PostgreSQL), client certificate (etcd) or
private socket (memcached), as in a cluster: `url` is what the site is given.
"""

import shutil
import signal
import tempfile
import types
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from deploy.cluster import etcd, free_port, new_password, server_settings, signal_group, start_server, stop
from deploy.kinds import rediscluster


class Server:
    """One store server on a free port, which a test may kill, pause and resume."""

    def __init__(self, name, start=None):
        """start: (port, state_dir, password) -> its record; by default deploy's own for the kind `name`."""
        self.name = name
        self._start = start or partial(start_server, name)
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix=f"lab-test-{name}-")
        self.password = new_password()  # kept across restarts, as a cluster keeps it
        self.record = None

    def start(self):
        self.record = self._start(port=self.port, state_dir=self._dir, password=self.password)
        return self

    @property
    def pid(self):
        return self.record["pid"]

    @property
    def url(self):
        """The site's setting for this server, credentials included."""
        (url,) = server_settings(self.name, self.record).values()
        return url

    def stop(self):
        """Kill the server, as a crash would, and remove its files."""
        signal_group(self.pid, signal.SIGCONT)
        stop(self.record, sig=signal.SIGKILL)
        shutil.rmtree(self.record.get("data", ""), ignore_errors=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def pause(self):
        signal_group(self.pid, signal.SIGSTOP)

    def resume(self):
        signal_group(self.pid, signal.SIGCONT)


def redis_server():
    return Server("redis")


def memcached_server():
    return Server("memcached")


@contextmanager
def one_node_redis_cluster():
    """A one-node Redis Cluster serving every slot: a client's calls are the same on any number of shards."""
    folder = Path(tempfile.mkdtemp(prefix="lab-test-rediscluster-"))
    try:
        place = types.SimpleNamespace(path=folder, durable=False, topology={})  # what start_node reads of a cluster
        node = rediscluster.start_node(place, "redis1", free_port(), free_port(), password="cluster-test-password")
        try:
            rediscluster.form([node], shards=1)
            yield node
        finally:
            stop(node)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postgres_server():
    return Server("postgres")


class EtcdCluster:
    """A real etcd cluster of `count` members on free ports; members can be killed, paused and started.

    Its members take only its own client certificate, as a deployed one's do: `settings` points the site at it.
    """

    def __init__(self, count):
        self._dir = tempfile.mkdtemp(prefix="lab-test-etcd-")
        try:
            self.members = etcd.start_members(etcd.on_loopback([free_port() for _ in range(count)], self._dir),
                                              self._dir)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    @property
    def endpoints(self):
        return tuple(("127.0.0.1", member["port"]) for member in self.members)

    @property
    def settings(self):
        """The site's settings for this cluster: its members and the client certificate's files."""
        return {"ETCD_ENDPOINTS": self.endpoints, **etcd.site_settings(self.members[0])}

    def client(self, name="etcd1", timeout=5):
        """An etcd3gw client of member `name`, with the site's certificate."""
        return etcd.client(self.member(name), timeout)

    def member(self, name):
        return next(m for m in self.members if m["name"] == name)

    def leader(self):
        return etcd.leader(self.members)

    def kill(self, name):
        stop(self.member(name), sig=signal.SIGKILL)

    def start(self, name):
        self.member(name).update(etcd.start_member(self.member(name), self._dir))

    def pause(self, name):
        signal_group(self.member(name)["pid"], signal.SIGSTOP)

    def stop(self):
        for member in self.members:
            signal_group(member["pid"], signal.SIGCONT)
            stop(member, sig=signal.SIGKILL)
        shutil.rmtree(self._dir, ignore_errors=True)
