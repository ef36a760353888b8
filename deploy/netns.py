"""Hosts on one machine: a network namespace per node, joined by a bridge, and partitions between them.

A cluster's nodes each get a namespace of their own, `<prefix>-<node>`, with
one end of a veth pair inside (its address 10.250.<net>.<n>/24) and the
other on the cluster's bridge in the root namespace, which holds the
gateway address (.1): HAProxy and the load generator stay in the root
namespace, the clients' side, and reach every node. No namespace has a
default route, so nothing they send can leave for anywhere but each other.

A partition is a set of nftables rules inside the namespaces concerned that
drop the packets silently, as a cut cable does: a connection attempt times
out, it is never refused. Partitions add up; `heal` removes them all.
Everything is named after the cluster's prefix, so `destroy` (and
`destroy_all`) find and remove it even when the cluster's record is gone.

Those names are exactly the ones this project makes (NAMESPACE, BRIDGE:
PREFIX and five hex digits, then a node of a kind it runs, or `br`); a
look-alike such as `laboratory-vpn` is somebody else's and never touched. Nor is a process
signalled here: the processes this project starts are recorded and
stopped by their records (deploy/processes.py); a cluster whose
namespaces still hold a process is left in place, and named in the error.
"""

import hashlib
import ipaddress
import re
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass

from deploy.errors import DeployError
from deploy.processes import run_all, wait_for

PREFIX = "lab"  # every namespace and bridge this project makes starts with it
# The names this project makes, and no others: a cluster's prefix (prefix_for's), then a
# node of a kind it runs for a namespace, or "br" for the bridge.
CLUSTER_PREFIX = re.compile(rf"{PREFIX}[0-9a-f]{{5}}")
NODE = re.compile(r"(app|redis|sentinel|pg|etcd)[0-9]{1,2}")
NAMESPACE = re.compile(rf"(?P<prefix>{CLUSTER_PREFIX.pattern})-{NODE.pattern}")
BRIDGE = re.compile(rf"(?P<prefix>{CLUSTER_PREFIX.pattern})br")
SUBNETS = ipaddress.ip_network("10.250.0.0/16")
TABLE = "lab_partition"
PROXY_HOST = 254  # the bridge's second address: HAProxy's source towards the instances


def available():
    """None if namespaces, veth, bridges and nftables work here, else why not, in one line."""
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; install it with: apt-get install -y {package}"
    probe = f"{PREFIX}probe{secrets.token_hex(4)}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode:
        return f"network namespaces are not available here: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


def _run(*argv, check=True):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise DeployError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Network:
    """One cluster's hosts: its prefix, its /24 and the nodes, by name, with their addresses."""

    prefix: str  # short: interface names must fit in 15 characters
    subnet: str
    nodes: dict  # node name -> {"namespace", "address", "veth"}

    @property
    def gateway(self):
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def bridge(self):
        return f"{self.prefix}br"

    @property
    def proxy_address(self):
        """HAProxy's source address: on the bridge, apart from the gateway the load generator uses."""
        return str(ipaddress.ip_network(self.subnet)[PROXY_HOST])

    def record(self):
        return asdict(self)

    def address(self, name):
        return self.nodes[name]["address"]

    def exec_prefix(self, name):
        """The argv prefix that runs a command inside the node's namespace."""
        return ["ip", "netns", "exec", self.nodes[name]["namespace"]]

    def command(self, name, argv, user=None):
        """argv run inside the node's namespace, as user if given.

        Both steps exec, never fork, so the pid spawned is the server's own.
        `setpriv` and not Popen's user=: entering a namespace needs root, so
        the user changes after it.
        """
        as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] if user else []
        return [*self.exec_prefix(name), *as_user, *map(str, argv)]


def prefix_for(state_dir):
    """A cluster's prefix, from its state folder alone: `down` and `cleanup` find it with no record."""
    return PREFIX + hashlib.sha256(str(state_dir).encode()).hexdigest()[:5]


def free_net_number():
    """A /24 of SUBNETS that no interface here has yet, chosen at random so side-by-side clusters differ."""
    taken = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    numbers = list(range(len(list(SUBNETS.subnets(new_prefix=24)))))
    secrets.SystemRandom().shuffle(numbers)
    for number in numbers:
        if f" 10.250.{number}.1/24 " not in taken:
            return number
    raise DeployError(f"every /24 of {SUBNETS} is taken here; remove old clusters with: python -m deploy cleanup --all")


def create(prefix, net_number, names):
    """Make a namespace per node on a bridge of its own; return the Network. Undone on failure.

    prefix: prefix_for's; names: nodes the project runs (NODE), so that
    `destroy_all` knows every name made here for its own.
    """
    strange = [name for name in names if not NODE.fullmatch(name)]
    if not CLUSTER_PREFIX.fullmatch(prefix) or strange:
        raise DeployError(f"namespaces are named {CLUSTER_PREFIX.pattern}-{NODE.pattern}, "
                          f"not {prefix}-{','.join(strange) or '...'}")
    subnet = list(SUBNETS.subnets(new_prefix=24))[net_number]
    taken = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    if f" {next(subnet.hosts())}/24 " in taken:
        raise DeployError(f"{subnet} is already a cluster's network here; choose another net number")
    hosts = subnet.hosts()
    gateway = next(hosts)
    network = Network(prefix, str(subnet), {
        name: {"namespace": f"{prefix}-{name}", "address": str(next(hosts)), "veth": f"{prefix}v{index}"}
        for index, name in enumerate(names)
    })
    try:
        _run("ip", "link", "add", network.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{gateway}/24", "dev", network.bridge)
        _run("ip", "addr", "add", f"{network.proxy_address}/24", "dev", network.bridge)
        _run("ip", "link", "set", network.bridge, "up")
        for node in network.nodes.values():
            _add_node(network, node)
    except BaseException:
        destroy(prefix)
        raise
    return network


def _add_node(network, node):
    namespace, veth = node["namespace"], node["veth"]
    _run("ip", "netns", "add", namespace)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    _run("ip", "link", "set", veth, "master", network.bridge, "up")
    _run("ip", "-n", namespace, "addr", "add", f"{node['address']}/24", "dev", "eth0")
    _run("ip", "-n", namespace, "link", "set", "eth0", "up")
    _run("ip", "-n", namespace, "link", "set", "lo", "up")
    _run("ip", "netns", "exec", namespace, "nft", "add", "table", "inet", TABLE)
    for chain, hook in (("incoming", "input"), ("outgoing", "output")):
        _run("ip", "netns", "exec", namespace, "nft", "add", "chain", "inet", TABLE, chain,
             f"{{ type filter hook {hook} priority 0 ; policy accept ; }}")


def partition(network, isolated, others=()):
    """Cut the nodes `isolated` off from `others` (from everyone else, the root namespace included, if empty).

    The isolated nodes still reach each other: they are one side of the split.
    """
    unknown = [name for name in (*isolated, *others) if name not in network.nodes]
    if unknown:
        raise DeployError(f"no node named {', '.join(unknown)}; the network has: {', '.join(network.nodes)}")
    overlap = set(isolated) & set(others)
    if overlap:
        raise DeployError(f"{', '.join(sorted(overlap))} cannot be on both sides of a partition")
    if others:
        pairs = [(a, network.address(b)) for a in isolated for b in others]
        pairs += [(b, network.address(a)) for a in isolated for b in others]
        for name, address in pairs:
            _drop(network, name, f"ip saddr {address}", f"ip daddr {address}")
    else:
        side = "{ " + ", ".join(network.address(name) for name in isolated) + " }"
        for name in isolated:
            # Everything but its own loopback and its own side: the other nodes, HAProxy, the load generator.
            _drop(network, name, f'iifname != "lo" ip saddr != {side}', f'oifname != "lo" ip daddr != {side}')


def _drop(network, name, incoming, outgoing):
    namespace = network.nodes[name]["namespace"]
    for chain, match in (("incoming", incoming), ("outgoing", outgoing)):
        _run("ip", "netns", "exec", namespace, "nft", "add", "rule", "inet", TABLE, chain, *match.split(), "drop")


def heal(network):
    """Remove every partition (a namespace that is gone took its rules with it)."""
    for node in network.nodes.values():
        for chain in ("incoming", "outgoing"):
            _run("ip", "netns", "exec", node["namespace"], "nft", "flush", "chain", "inet", TABLE, chain,
                 check=False)


def destroy(prefix, *, wait=5):
    """Remove the namespaces and the bridge named after prefix (their veths and rules go with them).

    Only once none holds a process: the cluster's recorded processes were
    stopped just before, and their last children may take a moment to
    exit. One still there after `wait` seconds is no process of a record,
    or a cluster still runs: nothing is removed, and DeployError names the
    processes. Return how many namespaces there were.
    """
    if not CLUSTER_PREFIX.fullmatch(prefix):
        raise DeployError(f"{prefix!r} is no cluster prefix of this project's ({CLUSTER_PREFIX.pattern})")
    found = namespaces(prefix)
    try:
        wait_for(lambda: not any(_pids(namespace) for namespace in found), timeout=wait, interval=0.5,
                 what=f"the processes in {prefix}'s namespaces to exit")
    except DeployError:
        held = "; ".join(f"{namespace}: pid {', '.join(pids)}" for namespace in found if (pids := _pids(namespace)))
        raise DeployError(f"{prefix}'s namespaces still hold processes ({held}), so none was removed; "
                          "stop them, then run: python -m deploy cleanup") from None
    for namespace in found:
        _run("ip", "netns", "del", namespace, check=False)
    _run("ip", "link", "del", f"{prefix}br", check=False)
    return len(found)


def _pids(namespace):
    return _run("ip", "netns", "pids", namespace, check=False).stdout.split()


def own_prefix(name):
    """The cluster prefix of a namespace or bridge this project made, or None for any other name."""
    match = NAMESPACE.fullmatch(name) or BRIDGE.fullmatch(name)
    return match["prefix"] if match else None


def destroy_all(names=None):
    """Remove every namespace and bridge this project made; return how many namespaces.

    names: the namespaces and bridges to look at (default: every one here);
    only NAMESPACE's and BRIDGE's are the project's. Each cluster's are
    removed even when another's fail (DeployError for the first, the others
    noted on it).
    """
    if names is None:
        names = [*_namespaces(), *_bridges()]
    prefixes = sorted({prefix for prefix in map(own_prefix, names) if prefix})
    counts = []
    run_all([lambda prefix=prefix: counts.append(destroy(prefix)) for prefix in prefixes])
    return sum(counts)


def namespaces(prefix):
    """The namespaces named after prefix that exist now."""
    return [n for n in _namespaces() if (match := NAMESPACE.fullmatch(n)) and match["prefix"] == prefix]


def rules(network, name):
    """The partition rules inside node `name`'s namespace now, as nft lists them."""
    listed = _run("ip", "netns", "exec", network.nodes[name]["namespace"], "nft", "list", "table", "inet", TABLE)
    return [line.strip() for line in listed.stdout.splitlines() if line.strip().endswith("drop")]


def _namespaces():
    return [line.split()[0] for line in _run("ip", "netns", "list", check=False).stdout.splitlines() if line]


def _bridges():
    links = _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
