"""HAProxy: its configuration, and its runtime API on a unix socket."""

import csv
import io
import os
import resource
import socket
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
# HAProxy's source address towards the instances, apart from local clients'
# 127.0.0.1 (any 127.0.0.0/8 address is local). Not a proof of anything:
# the instances trust HAProxy by the secret it reads from SECRET_VARIABLE.
SOURCE_ADDRESS = "127.0.0.9"
SECRET_VARIABLE = "LAB_PROXY_SECRET"
# Open WebSockets per instance through the load balancer (an instance holds 5,000+ idle ones),
# and connections in all, as far as HAProxy's open-file limit (this process's) allows: each
# connection is two of its file descriptors, and it keeps some for itself.
SOCKET_CONNECTIONS = 10000
CONNECTIONS = 20000
RESERVED_FILES = 200


def connections():
    """How many connections HAProxy takes at once: CONNECTIONS, or what its open-file limit holds."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return CONNECTIONS if soft == resource.RLIM_INFINITY else min(CONNECTIONS, (soft - RESERVED_FILES) // 2)


def environment(secret):
    """HAProxy's environment: the cluster's proxy secret, which the configuration reads from it.

    From the environment, not written in haproxy.cfg: no file holds it.
    """
    return {**os.environ, SECRET_VARIABLE: secret}


def render(*, port, stats_port, socket_path, pidfile, lb, slots, source=SOURCE_ADDRESS):
    """Return haproxy.cfg for a cluster.

    `slots` lists (name, host, port, enabled) for every server HAProxy knows; the
    ones not running yet are declared disabled, so `scale` can bring them in
    through the runtime API without a reload.
    """
    sticky = lb == "sticky"

    def servers(more=""):
        return "\n".join(
            f"    server {name} {host}:{app_port}"
            + (f" cookie {name}" if sticky else "")
            + more.format(name=name)
            + ("" if enabled else " disabled")
            for name, host, app_port, enabled in slots
        )

    return Template(TEMPLATE.read_text()).substitute(
        port=port,
        stats_port=stats_port,
        socket=socket_path,
        pidfile=pidfile,
        source=source,
        cookie="    cookie SERVERID insert indirect nocache\n" if sticky else "",
        servers=servers(),
        socket_servers=servers(f" track {Runtime.BACKEND}/{{name}}"),
        socket_connections=SOCKET_CONNECTIONS,
        connections=connections(),
    )


class Runtime:
    """HAProxy's admin socket: one command per connection."""

    BACKEND = "instances"
    SOCKETS_BACKEND = "sockets"  # the WebSockets (/ws/): the same servers, with limits of their own

    def __init__(self, socket_path):
        self.socket_path = str(socket_path)

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, server, state):
        """Set a server's admin state, for requests and sockets alike: ready, drain or maint."""
        for backend in (self.BACKEND, self.SOCKETS_BACKEND):
            answer = self.command(f"set server {backend}/{server} state {state}").strip()
            if answer:
                raise RuntimeError(f"haproxy refused 'state {state}' for {backend}/{server}: {answer}")

    def stats(self):
        """Return {server: row} from `show stat` for the instances backend."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == self.BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")
        }
