"""memcached: one node, on a UNIX socket that only the site's user can open; no TCP at all.

memcached's only authentication, SASL, needs the binary protocol, which
pymemcache lacks: the socket's permissions (0700, in a 0700 folder) are the
lock instead. As root it runs as `memcache` (or `nobody`), never as root,
and root's site can still open the socket.
"""

import os
from pathlib import Path

from deploy.kinds.base import Kind, private_folder, socket_open, start_process, unprivileged_user
from deploy.processes import require


def start_memcached(*, port, state_dir, password=None, durable=True, folder=None):
    """Start memcached on its socket in `folder` (its private folder from an earlier start; a new one if None);
    `port` and `password` are unused (see above)."""
    binary = require("memcached", "memcached")
    user = unprivileged_user("memcache", "nobody") if os.geteuid() == 0 else None
    folder = Path(folder) if folder else private_folder("memcached", user)
    socket_path = folder / "memcached.sock"
    argv = [binary, "-s", socket_path, "-a", "0700", "-U", "0", "-m", "256", *(["-u", user] if user else [])]
    record = start_process("memcached", argv, state_dir, ready=lambda: socket_open(socket_path),
                           where=str(socket_path))
    return {**record, "port": None, "socket": str(socket_path), "data": str(folder)}


class Memcached(Kind):
    name = server = "memcached"
    variables = ("MEMCACHED_URL",)
    placed = False  # a UNIX socket: no address, no namespace

    def new_password(self):
        return None

    def start_node(self, cluster, name, port, password, folder=None):
        return start_memcached(port=port, state_dir=cluster.path, durable=cluster.durable, folder=folder)

    def start_alone(self, *, port, state_dir, password=None, durable=True):
        return start_memcached(port=port, state_dir=state_dir, durable=durable)

    def restart(self, cluster, topology, name, record):
        """Empty, as a restarted memcached is (it keeps nothing on disk), in the same private folder, so on the
        socket path the instances' MEMCACHED_URL names: a new path would leave them failing on the old one until
        they restart (memcached removes the dead process's socket file itself)."""
        return self.start_node(cluster, name, record["port"], None, folder=record["data"])

    def url(self, record):
        return f"unix:{record['socket']}"


KIND = Memcached()
