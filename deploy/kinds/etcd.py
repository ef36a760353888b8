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

A cluster answers only its own clients: its members speak TLS to clients
and to each other, and take only a certificate of the cluster's own
authority (deploy/certificates.py: a member's `tls`, a 0700 folder in the
state folder, its keys 0600). etcd's users and passwords would guard only
keys: a stranger could still grant leases without bound, keep the site's
alive, list the members, or raise the NOSPACE alarm that stops every
write; a connection without the certificate does none of these. Every
member's certificate is also its peer certificate (Raft), and a peer port
takes only members' (their common name). The site, deploy and anything
else of the cluster's (e.g. Patroni's etcd3 section: cacert, cert, key)
present the one client certificate, `client_tls`, which a peer port refuses
and which serves as no member's.
"""

import json
import secrets
import shutil
import signal
import ssl
import urllib.request
from functools import cache
from pathlib import Path

from deploy import certificates
from deploy.errors import DeployError
from deploy.kinds.base import Kind
from deploy.layout import behind
from deploy.processes import port_open, require, running, spawn, stop, wait_for
from labcore.etcd import etcd_member

CLIENTS, PEERS = "127.0.0.1", "127.0.0.2"
PEER_PORT = 2380  # etcd's usual peer port: in namespaces every member has an address of its own
SIZES = (3, 5, 7)  # odd: a fourth or sixth member adds no loss the cluster survives
CLIENT = "client"  # the name of the cluster's one client certificate


def plan(endpoints, state_dir):
    """Members etcd1.. of a new cluster, one per ((host, port) for clients, (host, port) for peers)."""
    names = [f"etcd{n}" for n in range(1, len(endpoints) + 1)]
    initial = ",".join(f"{name}=https://{peer[0]}:{peer[1]}" for name, (_, peer) in zip(names, endpoints))
    token = secrets.token_hex(8)  # a cluster of its own: members of another never join it
    return [{"name": name, "host": client[0], "port": client[1], "peer_host": peer[0], "peer_port": peer[1],
             "data": str(Path(state_dir) / name), "initial_cluster": initial, "token": token, "exec": [],
             "tls": str(Path(state_dir) / f"etcd-tls-{token}")}
            for name, (client, peer) in zip(names, endpoints)]


def on_loopback(ports, state_dir):
    """Members listening on these ports: clients on 127.0.0.1, peers on 127.0.0.2."""
    return plan([((CLIENTS, port), (PEERS, port)) for port in ports], state_dir)


def start_members(members, state_dir):
    """Make the cluster's certificates, start every member; return their records (member and process)
    once a leader is elected."""
    started = []
    try:
        # etcd checks a peer's certificate against the address its connection comes from, and a latency relay
        # (deploy/links.py) forwards a peer's connection from its own member's address: so behind relays,
        # each member's certificate names every member's addresses.
        every = sorted({address for m in members for address in (m["host"], m["peer_host"])})
        certificates.issue(members[0]["tls"], {m["name"]: every if m.get("relayed") else [m["host"], m["peer_host"]]
                                               for m in members}, [CLIENT])
        for member in members:
            started.append({**member, **start_member(member, state_dir, wait=False)})
        for member in started:
            _wait_listening(member)
        wait_for(lambda: leader(started), timeout=30, what="an etcd leader")
    except BaseException:
        for member in started:
            stop(member, sig=signal.SIGKILL)
            shutil.rmtree(member["data"], ignore_errors=True)
        shutil.rmtree(members[0]["tls"], ignore_errors=True)
        raise
    return started


def start_member(member, state_dir, *, wait=True):
    """Start (or start again, with its data) one member; return its process record.

    wait: until it listens for clients. It serves only once a majority of
    its cluster runs, so a new cluster's first member waits for the others.
    """
    binary = require("etcd", "etcd-server")
    client_url = f"https://{member['host']}:{member['port']}"
    peer_url = f"https://{member['peer_host']}:{member['peer_port']}"
    # Behind a latency relay (deploy/links.py), it listens at layout.behind of the ports it advertises.
    shift = behind if member.get("relayed") else (lambda port: port)
    listen_client, listen_peer = (f"https://{member['host']}:{shift(member['port'])}",
                                  f"https://{member['peer_host']}:{shift(member['peer_port'])}")
    ca, cert, key = (str(Path(member["tls"]) / f"{name}.pem") for name in ("ca", member["name"],
                                                                          f"{member['name']}-key"))
    argv = [
        *member["exec"], binary, "--name", member["name"], "--data-dir", member["data"],
        "--listen-client-urls", listen_client, "--advertise-client-urls", client_url,
        "--listen-peer-urls", listen_peer, "--initial-advertise-peer-urls", peer_url,
        # Read at a member's first start only; one started again reads its data folder.
        "--initial-cluster", member["initial_cluster"], "--initial-cluster-token", member["token"],
        "--initial-cluster-state", "new",
        # etcd's defaults for one data centre: a heartbeat every 100 ms, an
        # election after 1 s without one.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        # Only the cluster's certificates, from clients and from peers; from peers, only members'.
        "--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", ca,
        "--peer-cert-file", cert, "--peer-key-file", key, "--peer-client-cert-auth", "--peer-trusted-ca-file", ca,
        "--peer-cert-allowed-cn", certificates.MEMBER,
        "--logger", "zap",
        # Not warn: etcd 3.4 warns of every gateway request made with a certificate.
        "--log-level", "error",
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
    port = behind(member["port"]) if member.get("relayed") else member["port"]
    wait_for(lambda: port_open(port, member["host"]) or not running(member), timeout=30,
             what=f"{name} on {member['host']}:{port}")
    if not running(member):
        raise DeployError(f"{name} exited at start (its ports busy?); see its log, logs/{name}.log")


def client_tls(member):
    """The cluster's client certificate files, by the names Patroni's etcd3 section gives them."""
    folder = Path(member["tls"])
    return {"cacert": str(folder / "ca.pem"), "cert": str(folder / f"{CLIENT}.pem"),
            "key": str(folder / f"{CLIENT}-key.pem")}


@cache
def _context(folder):
    """TLS that trusts only the cluster's authority, and shows the cluster's client certificate."""
    files = client_tls({"tls": folder})
    context = ssl.create_default_context(cafile=files["cacert"])
    context.load_cert_chain(files["cert"], files["key"])
    return context


def _call(member, path, body, timeout):
    """POST body (JSON) to the member's gateway; return its answer. OSError if it does not answer, or refuses."""
    request = urllib.request.Request(f"https://{member['host']}:{member['port']}/v3/{path}",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=_context(member["tls"])) as response:
        return json.load(response)


def client(member, timeout):
    """An etcd3gw client of one member, with the cluster's client certificate."""
    files = client_tls(member)
    return etcd_member(member["host"], member["port"], timeout, ca=files["cacert"], cert=files["cert"],
                       key=files["key"])


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
    """ETCD_ENDPOINTS for the site: every member's client address, comma-separated."""
    return ",".join(f"{m['host']}:{m['port']}" for m in members)


def site_settings(member):
    """ETCD_CA, ETCD_CERT and ETCD_KEY for the site: the cluster's client certificate files."""
    files = client_tls(member)
    return {"ETCD_CA": files["cacert"], "ETCD_CERT": files["cert"], "ETCD_KEY": files["key"]}


def start_alone(*, port, state_dir, password=None, durable=True):
    """One member, a cluster of its own, on loopback: the benchmarks' and the tests' private server.

    Its certificates are its own cluster's (see start_members), and etcd
    always syncs its log to disk, so `password` and `durable` are unused.
    """
    return start_members(on_loopback([port], state_dir), state_dir)[0]


class Etcd(Kind):
    """`etcd_members` members (3, 5 or 7), started together as one Raft cluster; they elect their own
    leader, and the site is given every member (any of them serves)."""

    name = server = "etcd"
    variables = ("ETCD_ENDPOINTS", "ETCD_CA", "ETCD_CERT", "ETCD_KEY")
    aliases = ("etcd:leader",)
    relayed = True

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
        for member in members:
            member["relayed"] = cluster.relays  # behind its relay (deploy/links.py), unless up --no-relays
        for member in start_members(members, cluster.path):
            cluster.stores[member["name"]] = {"kind": self.name, **member}
        cluster.save()

    def relay_routes(self, cluster, name, port):
        """Its clients' port, and its peers' (PEER_PORT at its own address in namespaces, else on PEERS)."""
        peer = (cluster.host(name), PEER_PORT) if cluster.network else (PEERS, port)
        return {**super().relay_routes(cluster, name, port), f"{name}-peers": (peer, (peer[0], behind(peer[1])))}

    def start_alone(self, *, port, state_dir, password=None, durable=True):
        return start_alone(port=port, state_dir=state_dir)

    def restart(self, cluster, topology, name, record):
        """It rejoins with its data folder, as the member it was."""
        return {**record, **start_member(record, cluster.path)}

    def role(self, record):
        return role(record)

    def url(self, record):
        return endpoints([record])

    def settings(self, record):
        return {"ETCD_ENDPOINTS": endpoints([record]), **site_settings(record)}

    def env(self, topology, group):
        """Every member, and the cluster's client certificate files (one for every member)."""
        return {"ETCD_ENDPOINTS": endpoints(group.values()), **site_settings(next(iter(group.values())))}

    def resolve(self, alias, topology, group):
        found = leader(group.values())
        if found is None:
            raise DeployError("no etcd member is leader now; see: python -m deploy status")
        return found


KIND = Etcd()
