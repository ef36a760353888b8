"""An etcd cluster on loopback: N members, each a process with its own data folder.

Raft: a write is committed once a majority of the members has it, and
without a majority nothing is written or read. A member that is started
again with its data folder rejoins as it was.
"""

import json
import secrets
import signal
import urllib.request
from pathlib import Path

from deploy.processes import port_open, require, spawn, stop, wait_for


def member_urls(ports):
    return {f"etcd{n}": f"http://127.0.0.1:{port}" for n, port in enumerate(ports, start=1)}


def start_members(*, client_ports, peer_ports, state_dir):
    """Start one member per pair of ports; return their records once a leader is elected."""
    peers = member_urls(peer_ports)
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    token = secrets.token_hex(8)  # a cluster of its own: members of another never join it
    members = []
    try:
        for (name, peer_url), port, peer_port in zip(peers.items(), client_ports, peer_ports):
            member = {"name": name, "port": port, "peer_port": peer_port,
                      "data": str(Path(state_dir) / name), "initial_cluster": initial, "token": token}
            members.append({**member, **start_member(member, state_dir)})
        for member in members:
            wait_for(lambda: port_open(member["port"]), timeout=30,
                     what=f"{member['name']} on port {member['port']}")
        wait_for(lambda: leader(members), timeout=30, what="an etcd leader")
    except BaseException:
        for member in members:
            stop(member, sig=signal.SIGKILL)
        raise
    return members


def start_member(member, state_dir):
    """Start (or start again, with its data) one member; return its process record."""
    binary = require("etcd", "etcd-server")
    client_url, peer_url = f"http://127.0.0.1:{member['port']}", f"http://127.0.0.1:{member['peer_port']}"
    argv = [
        binary, "--name", member["name"], "--data-dir", member["data"],
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", member["initial_cluster"], "--initial-cluster-token", member["token"],
        "--initial-cluster-state", "new",
        # etcd's defaults for one data centre: a heartbeat every 100 ms, an
        # election after 1 s without one.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        "--logger", "zap", "--log-level", "warn",
    ]
    (Path(state_dir) / "logs").mkdir(parents=True, exist_ok=True)
    return spawn(argv, log_path=Path(state_dir) / "logs" / f"{member['name']}.log")


def status(port, timeout=0.5):
    """A member's own view: its id and its leader's, or None if it does not answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/maintenance/status", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except OSError:
        return None
    return {"member": answer["header"]["member_id"], "leader": answer.get("leader")}


def role(port):
    """'leader', 'follower' or 'down', as the member itself says now."""
    seen = status(port)
    if seen is None:
        return "down"
    return "leader" if seen["member"] == seen["leader"] else "follower"


def leader(members):
    """The name of the member that says it leads, or None."""
    return next((m["name"] for m in members if role(m["port"]) == "leader"), None)
