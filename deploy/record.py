"""A cluster's record: what runs and where (cluster.json), and the state folder that holds it.

Everything lives under one state folder: `cluster.json`, `haproxy.cfg`, the
admin socket, and a log per process. deploy makes the folder and marks it
(MARKER); `down` empties it but for the logs.
"""

import json
import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy import haproxy, layout, netns
from deploy.errors import DeployError
from deploy.processes import paused, running

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / "state" / "cluster"
LOOPBACK = "127.0.0.1"


@dataclass
class Cluster:
    """What runs, and where: saved as cluster.json in the state folder."""

    state_dir: str
    port: int
    lb: str
    sessions: str
    presence: str
    db: str
    secret_key: str
    # Proves a request came through HAProxy, which sets it as X-Lab-Proxy-Secret (labcore/proxy.py).
    proxy_secret: str = ""
    server: str = "gthread:8"  # how each instance is served (deploy/web.py)
    channel_layer: str = ""  # memory or redis under an ASGI server (deploy/sockets.py); "" under WSGI
    durable: bool = True  # False: PostgreSQL without fsync, SQLite synchronous=NORMAL (benchmarks only)
    env: dict = field(default_factory=dict)  # extra settings for every instance
    # Every process as {"pid", "started"}: its start time tells it from a later process with the same pid.
    instances: dict = field(default_factory=dict)  # name -> {"port", "pid", "started"}
    # node name (redis1, sentinel1, pg1, memcached, ...) -> {"kind", "port", "pid", "started"} and its
    # credentials ("password"; "socket"), maybe "data"
    stores: dict = field(default_factory=dict)
    topology: dict = field(default_factory=dict)  # deploy.topology.Topology, as a dict
    haproxy: dict = field(default_factory=dict)  # {"pid", "started"}
    cpu: dict = field(default_factory=dict)  # deploy.cgroups.Limits, as a dict; empty: no CPU limits
    # With --netns: deploy.netns.Network, as a dict; every store node and instance in a namespace of its own.
    network: dict = field(default_factory=dict)
    partitions: list = field(default_factory=list)  # [{"isolated": [...], "from": [...]}], as made
    # `up --runtime`, what runs the cluster: "processes" (deploy's own, on this machine) or "swarm" (Docker
    # Swarm services of the stack `stack`: deploy/swarm.py); every later command reads it here.
    runs_on: str = "processes"
    stack: str = ""
    # deploy/links.py: {"folder", "relays": {name: {"pid", "started", "control"}}, "latency": {name: {"ms", ...}}}
    links: dict = field(default_factory=dict)
    # False (up --no-relays): no latency relay anywhere, every node and instance on its own port, so a benchmark
    # measures the site and its stores without a relay's hop; `latency` and `stall` are refused (deploy/links.py).
    relays: bool = True

    @property
    def net(self):
        """The cluster's deploy.netns.Network, or None on loopback."""
        return netns.Network(**self.network) if self.network else None

    def host(self, name):
        """The address node or instance `name` listens on: its namespace's, or loopback."""
        net = self.net
        return net.address(name) if net and name in net.nodes else LOOPBACK

    def command(self, name, argv, user=None):
        """argv as node or instance `name` runs it: inside its namespace, if it has one."""
        net = self.net
        if net and name in net.nodes:
            return net.command(name, argv, user)
        return [*map(str, argv)]

    @property
    def proxy_source(self):
        """HAProxy's source address towards the instances (proof of nothing: see labcore/proxy.py)."""
        return self.net.proxy_address if self.network else haproxy.SOURCE_ADDRESS

    def instance_url(self, name):
        """The instance's own address, past HAProxy: a client pinned to it."""
        return f"http://{self.host(name)}:{self.instance_port(name)}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats_url(self):
        return f"http://127.0.0.1:{self.port + layout.STATS_OFFSET}/"

    @property
    def path(self):
        return Path(self.state_dir)

    @property
    def runtime(self):
        return haproxy.Runtime(self.path / "haproxy.sock")

    def instance_port(self, name):
        return layout.instance_port(self.port, name)

    def save(self):
        """Write cluster.json whole or not at all: a crash mid-write leaves the record before it, which `down` reads.

        It holds SECRET_KEY: private from its first byte (mkstemp makes it 0600).
        """
        descriptor, temporary = tempfile.mkstemp(dir=self.path, prefix=".cluster.json.")
        try:
            with os.fdopen(descriptor, "w") as out:
                json.dump(asdict(self), out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path / "cluster.json")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def state(self, name, process):
        """status's `state` of a node or instance: down (its process is gone), paused (SIGSTOP),
        partitioned (named in a partition in force), or up."""
        if not running(process):
            return "down"
        if paused(process):
            return "paused"
        if any(name in (*cut["isolated"], *cut["from"]) for cut in self.partitions):
            return "partitioned"
        return "up"

    def processes(self):
        """The records of every process the cluster started."""
        return [record for record in (self.haproxy, *self.instances.values(), *self.stores.values()) if record]

    def pids(self):
        return [record["pid"] for record in self.processes()]


# In every state folder deploy made: the one sign that deploy may write, close and empty it.
MARKER = ".stateful-lab"


def make_private_folder(path):
    """Create the state folder 0700, marked as deploy's: it holds secrets, the database and logs.

    A folder that exists is used only if deploy made it (made_by_deploy), or
    if it is empty, ours and already closed to other users, and then
    marked: deploy never closes, fills or empties a folder of somebody
    else's (a home folder given by mistake to --state-dir, a folder another
    user prepared with a marker in it). DeployError otherwise.
    """
    path = Path(path)
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        (path / MARKER).touch(mode=0o600)
    elif not made_by_deploy(path):
        if not _private(path, stat.S_ISDIR) or any(path.iterdir()):
            raise DeployError(f"{path} was not made by deploy (no {MARKER} of ours in it), and is not an empty "
                              "folder of ours closed to other users: choose a new --state-dir (deploy creates "
                              "it), or empty this one yourself")
        (path / MARKER).touch(mode=0o600)
    path.chmod(0o700)
    logs = path / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    if not _private(logs, stat.S_ISDIR, closed=0o022):
        raise DeployError(f"{logs} is not a folder of ours (a link, or another user's): remove it")
    logs.chmod(0o700)


def made_by_deploy(path):
    """Whether deploy made the folder: it and its MARKER are ours, no links, nobody else may write there.

    A folder made before the marker existed (0700, ours, with a cluster.json
    of ours that only we can read) is deploy's too, and gets its marker now,
    so that the cluster it records can still be stopped.
    """
    path = Path(path)
    if not _private(path, stat.S_ISDIR, closed=0o022):
        return False
    if _private(path / MARKER, stat.S_ISREG, closed=0o022):
        return True
    if _private(path, stat.S_ISDIR) and _private(path / "cluster.json", stat.S_ISREG):
        (path / MARKER).touch(mode=0o600)
        return True
    return False


def _private(path, kind, closed=0o077):
    """path is a `kind` (stat.S_ISDIR, S_ISREG) itself, not a link to one, ours, without the `closed` mode bits."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return kind(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & closed


def remove_private_files(path):
    """Empty a state folder deploy made, but for its logs: the record last, so that a failure leaves it to retry.

    What goes holds a secret or user data: cluster.json (SECRET_KEY, the
    stores' passwords), the stores' configurations (requirepass), the
    SQLite database (password hashes), file sessions, HAProxy's files.
    """
    path = Path(path)
    if not made_by_deploy(path):
        raise DeployError(f"{path} was not made by deploy (no {MARKER} in it): nothing in it is removed")
    for entry in sorted(path.iterdir(), key=lambda entry: entry.name == "cluster.json"):
        if entry.name in (MARKER, "logs"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def load(state_dir=DEFAULT_STATE_DIR):
    """Return the cluster recorded in state_dir, or None."""
    try:
        return Cluster(**json.loads((Path(state_dir) / "cluster.json").read_text()))
    except FileNotFoundError:
        return None
