"""Which node opened a connection: by its address in namespaces, by the process that holds it on loopback.

A relay (deploy/relay.py) adds its own node's delay and the delay of the
node at the other end, so that a connection between A and B is delayed by
latency(A) + latency(B). On loopback every node's connections come from
127.0.0.1, so the other end is found by its socket: the kernel's socket
diagnostics (netlink, one exact look-up, no scan of every socket) give the
inode of the peer's socket, and the node whose processes (its recorded pid
and every descendant: PostgreSQL's walreceiver, gunicorn's workers) hold a
descriptor of it is the one. In namespaces each node has an address of its
own, and the address says it.

Guarantees: an answer names a candidate whose process held the connection
when asked; None when no candidate does (HAProxy, a load generator, a test
client) or when the kernel cannot be asked (then the connection counts as
from outside, delayed by the relay's own node alone).
"""

import os
import socket
import struct

SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NETLINK_SOCK_DIAG = 4  # linux/netlink.h (Python names no constant for it)
NO_COOKIE = 0xFFFFFFFF
ALL_STATES = 0xFFFFFFFF


def owner(peer, local, candidates):
    """The name in candidates ({name: {"address", "pids"}}) of the node at the `peer` end of a TCP connection
    whose other end is `local`; None if none of them.

    Only candidates whose address is the peer's count: one in namespaces, and on loopback (where every
    node's connections come from 127.0.0.1) the one whose processes hold the socket. A connection from
    an address no candidate has (HAProxy's 127.0.0.9, say) costs no look-up.
    """
    here = {name: known for name, known in candidates.items() if known.get("address") == peer[0]}
    if not peer[0].startswith("127.") or not here:
        return next(iter(here), None)
    inode = peer_inode(peer, local)
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    for name, known in here.items():
        if any(_holds(pid, link) for pid in descendants(known.get("pids", ()))):
            return name
    return None


def peer_inode(peer, local):
    """The inode of the socket bound to `peer` and connected to `local` (IPv4), or None."""
    sockid = struct.pack("!HH16s16s", peer[1], local[1], socket.inet_aton(peer[0]).ljust(16, b"\0"),
                         socket.inet_aton(local[0]).ljust(16, b"\0"))
    sockid += struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, ALL_STATES) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, 1, 1, 0)  # NLM_F_REQUEST
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(1)
            diag.send(header + request)
            reply = diag.recv(8192)
    except OSError:
        return None
    length, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR or length < 16 + 72:
        return None
    return struct.unpack_from("=I", reply, 16 + 68)[0]  # inet_diag_msg's last field, after uid


def descendants(pids):
    """The pids and every descendant of theirs that runs now."""
    found, stack = [], list(pids)
    while stack:
        pid = stack.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except OSError:
            continue  # gone since
    return found


def _holds(pid, link):
    try:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                try:
                    if os.readlink(entry.path) == link:
                        return True
                except OSError:
                    continue
    except OSError:
        return False
    return False
