"""The one small interface every kind of server fills in, and the helpers its modules share.

A kind of server is one module in deploy/kinds/ with a `Kind` subclass and
one row in KINDS (deploy/kinds/__init__.py); its nodes' ports come from its
slot range in deploy/layout.py. Everything deploy does to store nodes
(plan, start, ask, stop, point the site at them, promote) goes through
these hooks, so no other module asks which kind a node is.

A node is a dict saved in the cluster's record (cluster.json, 0600): its
`kind` (one of the module's `node_kinds`), `port`, `host`, process (`pid`,
`started`), its credentials (`password`, ...) and maybe its `data` folder.
"""

import pwd
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from deploy.errors import DeployError
from deploy.kinds import disks
from deploy.layout import behind
from deploy.processes import running, signal_tree, spawn, stop, wait_for

LOOPBACK = "127.0.0.1"


class Kind:
    """A kind of server: how its nodes are planned, started, asked, stopped and pointed at.

    Subclasses set `name`, `server` and `variables`, and fill in `start_node`,
    `start_alone` and `url`; the other hooks have the defaults of a server
    alone (one node, named after the kind, primary while it runs).
    """

    name = ""  # its row in KINDS, its slot range in layout.STORE_SLOTS, and its nodes' `kind`
    server = ""  # the server the registry names (labcore/registry.py) that it provides
    variables = ()  # the site settings it sets; the first points the site at it (`url`)
    stop_signal = signal.SIGTERM  # how its nodes are asked to stop
    placed = True  # its nodes listen on an address (a namespace each with --netns), not a UNIX socket
    stops_first = False  # stopped before the other kinds' nodes (Sentinels: no failover while the rest stop)
    aliases = ()  # names like "pg:primary" that `resolve` turns into the node that is it now
    needs = ()  # servers that must run before its nodes start (Patroni's etcd), started with them
    # Its nodes listen behind a latency relay at layout.behind(port) (deploy/links.py), unless the cluster runs
    # without relays (up --no-relays: Cluster.relays).
    relayed = False

    @property
    def node_kinds(self):
        """The `kind` of its nodes in the record (a Sentinel topology has Redis nodes and Sentinels)."""
        return (self.name,)

    def serves(self, topology):
        """True if it is the kind that provides `server` in this topology (several may provide Redis)."""
        return True

    def check(self, topology):
        """Raise DeployError for a topology it cannot run."""

    def check_server(self, server):
        """Raise DeployError if the instances' server (deploy/web.py) would overrun it."""

    def nodes(self, topology, port_of):
        """[(name, node kind, port)] of its nodes, primaries first; port_of(slot range, index) -> port."""
        return [(self.name, self.name, port_of(self.name, 0))]

    def relay_routes(self, cluster, name, port):
        """{route: (listen, target)} of node `name`'s latency relay (when `relayed`): it takes the node's
        port, and the node listens at layout.behind(port) (deploy/links.py)."""
        host = cluster.host(name)
        return {name: ((host, port), (host, behind(port)))}

    def extra_ports(self, base, planned):
        """{port: what} its nodes use besides their own ports (Redis Cluster's bus)."""
        return {}

    def new_password(self):
        """A new cluster's credentials for its nodes: one password per kind and cluster."""
        return new_password()

    def start_all(self, cluster, topology, planned):
        """Start its planned nodes, recording each in cluster.stores as soon as it runs."""
        password = self.new_password()
        for name, kind, port in planned:
            cluster.stores[name] = {"kind": kind, **self.start_node(cluster, name, port, password)}
            cluster.save()

    def start_node(self, cluster, name, port, password):
        """Start one node of a cluster; return its record."""
        raise NotImplementedError(f"{type(self).__name__} must say how to start a node (start_node)")

    def start_alone(self, *, port, state_dir, password, durable=True):
        """Start one server outside any cluster (the benchmarks' and the tests' private servers)."""
        raise NotImplementedError(f"{type(self).__name__} must say how to start a server alone (start_alone)")

    def restart(self, cluster, topology, name, record):
        """Start a stopped node again, as what the topology needs it to be now; return its new record."""
        return self.start_node(cluster, name, record["port"], record.get("password"))

    def kill(self, record, process=None):
        """Crash a running node like a dead machine (SIGKILL to its processes); process: one of them alone."""
        if process:
            raise DeployError(f"a {self.name} node has no process {process!r} to kill alone")
        signal_tree(record["pid"], signal.SIGCONT)  # a paused node cannot act on a signal
        stop(record, sig=signal.SIGKILL)

    def stop(self, record):
        """Stop a node for `down` (its stop_signal), unmount its disk (--power-loss) and remove its data folder."""
        if running(record):
            signal_tree(record["pid"], signal.SIGCONT)
        stop(record, sig=self.stop_signal)
        disks.release(record)
        if "data" in record:
            shutil.rmtree(record["data"], ignore_errors=True)

    def role(self, record):
        """What the node says it is now: primary, replica, standby, sentinel, leader, follower, candidate, or down."""
        return "primary" if running(record) else "down"

    def row(self, record, alive):
        """Fields of its nodes' status rows besides the common ones."""
        return {}

    def summary(self, group):
        """Top-level fields of `status --json` for its nodes (group: name -> record), e.g. settings in force."""
        return {}

    def url(self, record):
        """The value of its first variable for one node: how the site reaches it."""
        raise NotImplementedError(f"{type(self).__name__} must say how the site reaches a node (url)")

    def settings(self, record):
        """The site settings that point it at one node alone, credentials included."""
        return {self.variables[0]: self.url(record)}

    def env(self, topology, group):
        """The site settings that point the instances at its nodes (group: name -> record, primaries first)."""
        return self.settings(next(iter(group.values())))

    def resolve(self, alias, topology, group):
        """The name of the node `alias` means now; DeployError if none is."""
        raise DeployError(f"{alias} names no node of {self.name}")

    def promote(self, cluster, group, *, force=False):
        """Promote a replica by hand; return its name."""
        raise DeployError(f"{self.name} has no promote")


def new_password():
    """A store's password, generated per cluster like SECRET_KEY; URL-safe, so it rides in the site's URL."""
    return secrets.token_urlsafe(32)


def host_of(record):
    """The address a store node's record listens on: loopback for a record older than namespaces."""
    return record.get("host") or LOOPBACK


def where(cluster, name):
    """Where node `name` runs: its address, whether it listens behind its latency relay (the cluster's record:
    not under up --no-relays; deploy/links.py), and (in a namespace) how to run a command there."""
    inside = {"command": lambda argv, user: cluster.command(name, argv, user)} if cluster.network else {}
    return {"host": cluster.host(name), "relayed": cluster.relays, **inside}


def here(argv, user):
    """A command run where deploy runs: unchanged."""
    return argv


def unprivileged_user(*names):
    """The first of these users that exists, to run a store as instead of root."""
    for name in names:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DeployError(f"none of the users {', '.join(names)} exists to run a store without root")


def private_folder(name, user):
    """A new 0700 folder for a store's files, owned by the user it runs as.

    Under /var/tmp, not in the state folder: as root the store runs as
    another user, who may not pass the state folder's parents, and a UNIX
    socket's path must stay short (108 bytes).
    """
    folder = Path(tempfile.mkdtemp(prefix=f"stateful-lab-{name}-", dir="/var/tmp"))
    if user:
        shutil.chown(folder, user)
    return folder


def socket_open(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def start_process(name, argv, state_dir, *, ready, where, user=None):
    """Start a store and wait until ready() is true; return its process's record: pid and start time."""
    (Path(state_dir) / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    record = spawn(argv, log_path=Path(state_dir) / "logs" / f"{name}.log", user=user)
    try:
        # 60 s: a PostgreSQL rejoining as a standby replays its WAL before it listens, which took over 30 s
        # once on this two-core machine.
        wait_for(ready, timeout=60, what=f"{name} on {where}")
    except DeployError:
        stop(record)
        raise
    return record
