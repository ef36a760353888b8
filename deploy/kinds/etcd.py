"""An etcd cluster: N members, each a process with its own data folder.

Raft: a write is committed once a majority of the members has it, and
without a majority nothing is written or read. A member that is started
again with its data folder rejoins as it was.

This is the one place members are started, asked and restarted: by
`deploy up --sessions etcd` (the kind, `Etcd`), by the tests and by
`python -m loadtest etcd-loss`. A member is a dict, saved as it is in the
cluster's record: its name (etcd1..), where it listens for clients
(`host`, `port`) and for its peers (`peer_host`, `peer_port`), its data
folder, the cluster it was born into, and `exec`, an argv prefix that runs
it elsewhere (inside a network namespace: deploy/netns.py).

On loopback a member listens for clients on 127.0.0.1:port and for its
peers on 127.0.0.2 at the same port number: one port per member, so seven
members fit a cluster's eight etcd slots (deploy/layout.py).

A cluster answers only its own clients: once it has a leader, etcd's
authentication is turned on, with one user, SITE_USER, whose password
(generated per cluster, recorded with each member as "password") the site
is given in ETCD_ENDPOINTS, as Redis's is given in its URL. A member's
status (its role, its leader) stays open: deploy reads it without logging in.
"""

import base64
import json
import secrets
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path

from deploy.errors import DeployError
from deploy.kinds.base import Kind
from deploy.processes import port_open, require, running, spawn, stop, wait_for
from labcore.connections import EtcdLogin, etcd_member

CLIENTS, PEERS = "127.0.0.1", "127.0.0.2"
PEER_PORT = 2380  # etcd's usual peer port: in namespaces every member has an address of its own
SIZES = (3, 5, 7)  # odd: a fourth or sixth member adds no loss the cluster survives
SITE_USER = "lab"  # the one user that may read and write; the site logs in as it


def plan(endpoints, state_dir):
    """Members etcd1.. of a new cluster, one per ((host, port) for clients, (host, port) for peers)."""
    names = [f"etcd{n}" for n in range(1, len(endpoints) + 1)]
    initial = ",".join(f"{name}=http://{peer[0]}:{peer[1]}" for name, (_, peer) in zip(names, endpoints))
    token = secrets.token_hex(8)  # a cluster of its own: members of another never join it
    password = secrets.token_urlsafe(32)  # SITE_USER's; URL-safe, so it rides in ETCD_ENDPOINTS
    return [{"name": name, "host": client[0], "port": client[1], "peer_host": peer[0], "peer_port": peer[1],
             "data": str(Path(state_dir) / name), "initial_cluster": initial, "token": token, "exec": [],
             "password": password}
            for name, (client, peer) in zip(names, endpoints)]


def on_loopback(ports, state_dir):
    """Members listening on these ports: clients on 127.0.0.1, peers on 127.0.0.2."""
    return plan([((CLIENTS, port), (PEERS, port)) for port in ports], state_dir)


def start_members(members, state_dir):
    """Start every member; return their records (member and process) once a leader is elected and
    only SITE_USER may read or write."""
    started = []
    try:
        for member in members:
            started.append({**member, **start_member(member, state_dir, wait=False)})
        for member in started:
            _wait_listening(member)
        wait_for(lambda: leader(started), timeout=30, what="an etcd leader")
        _require_logins(started[0])
    except BaseException:
        for member in started:
            stop(member, sig=signal.SIGKILL)
            shutil.rmtree(member["data"], ignore_errors=True)
        raise
    return started


def start_member(member, state_dir, *, wait=True):
    """Start (or start again, with its data) one member; return its process record.

    wait: until it listens for clients. It serves only once a majority of
    its cluster runs, so a new cluster's first member waits for the others.
    """
    binary = require("etcd", "etcd-server")
    client_url = f"http://{member['host']}:{member['port']}"
    peer_url = f"http://{member['peer_host']}:{member['peer_port']}"
    argv = [
        *member["exec"], binary, "--name", member["name"], "--data-dir", member["data"],
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        # Read at a member's first start only; one started again reads its data folder.
        "--initial-cluster", member["initial_cluster"], "--initial-cluster-token", member["token"],
        "--initial-cluster-state", "new",
        # etcd's defaults for one data centre: a heartbeat every 100 ms, an
        # election after 1 s without one.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        # The password is 32 random bytes: bcrypt's work factor would only slow each login.
        "--bcrypt-cost", "4",
        "--logger", "zap", "--log-level", "warn",
    ]
    (Path(state_dir) / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    record = spawn(argv, log_path=Path(state_dir) / "logs" / f"{member['name']}.log")
    if wait:
        try:
            _wait_listening({**member, **record})
        except BaseException:
            stop(record, sig=signal.SIGKILL)
            raise
    return record


def _wait_listening(member):
    name = member["name"]
    wait_for(lambda: port_open(member["port"], member["host"]) or not running(member), timeout=30,
             what=f"{name} on {member['host']}:{member['port']}")
    if not running(member):
        raise DeployError(f"{name} exited at start (its ports busy?); see its log, logs/{name}.log")


def _call(member, path, body, timeout):
    """POST body (JSON) to the member's gateway; return its answer. OSError if it does not answer, or refuses."""
    request = urllib.request.Request(f"http://{member['host']}:{member['port']}/v3/{path}",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _require_logins(member):
    """Turn authentication on: SITE_USER may read and write every key, and nobody else may do anything.

    etcd turns it on only with a `root` user; root's password is made, used
    by nobody and forgotten, like PostgreSQL's superuser's (deploy/kinds/pgserver.py).
    """
    every_key = base64.b64encode(b"\0").decode()  # from key "\0" to range end "\0": all of them
    steps = [
        ("auth/user/add", {"name": "root", "password": secrets.token_urlsafe(32)}),
        ("auth/user/grant", {"user": "root", "role": "root"}),
        ("auth/role/add", {"name": SITE_USER}),
        ("auth/role/grant", {"name": SITE_USER, "perm": {"permType": "READWRITE", "key": every_key,
                                                          "range_end": every_key}}),
        ("auth/user/add", {"name": SITE_USER, "password": member["password"]}),
        ("auth/user/grant", {"user": SITE_USER, "role": SITE_USER}),
        ("auth/enable", {}),
    ]
    for path, body in steps:
        try:
            _call(member, path, body, timeout=10)
        except OSError as exc:
            said = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else exc
            raise DeployError(f"{member['name']} refused {path}: {said}") from exc


def client(member, timeout):
    """An etcd3gw client of one member, logged in as SITE_USER (its first call logs in)."""
    return etcd_member(member["host"], member["port"], timeout, EtcdLogin(SITE_USER, member["password"]))


def status(member, timeout=0.5):
    """A member's own view: its id and its leader's, or None if it does not answer."""
    try:
        answer = _call(member, "maintenance/status", {}, timeout)
    except OSError:
        return None
    return {"member": answer["header"]["member_id"], "leader": answer.get("leader")}


def role(member):
    """What the member itself says it is now: 'leader', 'follower', 'candidate' (it knows no leader) or 'down'."""
    seen = status(member)
    if seen is None:
        return "down"
    if not seen["leader"]:
        return "candidate"
    return "leader" if seen["member"] == seen["leader"] else "follower"


def leader(members):
    """The name of the member that says it leads, or None."""
    return next((m["name"] for m in members if role(m) == "leader"), None)


def endpoints(members):
    """ETCD_ENDPOINTS for the site: every member's client address with SITE_USER's password, comma-separated."""
    return ",".join(f"{SITE_USER}:{m['password']}@{m['host']}:{m['port']}" for m in members)


def start_alone(*, port, state_dir, password=None, durable=True):
    """One member, a cluster of its own, on loopback: the benchmarks' and the tests' private server.

    Its password is its own cluster's (see plan), and etcd always syncs its
    log to disk, so `password` and `durable` are unused.
    """
    return start_members(on_loopback([port], state_dir), state_dir)[0]


class Etcd(Kind):
    """`etcd_members` members (3, 5 or 7), started together as one Raft cluster; they elect their own
    leader, and the site is given every member (any of them serves)."""

    name = server = "etcd"
    variables = ("ETCD_ENDPOINTS",)
    aliases = ("etcd:leader",)

    def check(self, topology):
        if topology.etcd_members not in SIZES:
            raise DeployError(f"--etcd-members must be one of {', '.join(map(str, SIZES))}, "
                              f"not {topology.etcd_members}")

    def nodes(self, topology, port_of):
        return [(f"etcd{n + 1}", "etcd", port_of("etcd", n)) for n in range(topology.etcd_members)]

    def start_all(self, cluster, topology, planned):
        """All at once: a member serves only once a majority of them runs. Each is recorded once a leader
        is elected. In namespaces each member has its own address, so its peers' port is PEER_PORT."""
        network = cluster.net
        if network:
            members = plan([((network.address(name), port), (network.address(name), PEER_PORT))
                            for name, _, port in planned], cluster.path)
            for member in members:
                member["exec"] = network.exec_prefix(member["name"])
        else:
            members = on_loopback([port for _, _, port in planned], cluster.path)
        for member in start_members(members, cluster.path):
            cluster.stores[member["name"]] = {"kind": self.name, **member}
        cluster.save()

    def start_alone(self, *, port, state_dir, password=None, durable=True):
        return start_alone(port=port, state_dir=state_dir)

    def restart(self, cluster, topology, name, record):
        """It rejoins with its data folder, as the member it was."""
        return {**record, **start_member(record, cluster.path)}

    def role(self, record):
        return role(record)

    def url(self, record):
        return endpoints([record])

    def env(self, topology, group):
        return {"ETCD_ENDPOINTS": endpoints(group.values())}

    def resolve(self, alias, topology, group):
        found = leader(group.values())
        if found is None:
            raise DeployError("no etcd member is leader now; see: python -m deploy status")
        return found


KIND = Etcd()
