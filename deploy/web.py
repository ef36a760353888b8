"""How an instance is served: its server's command line, chosen by name.

Every choice keeps one process per instance: in memory mode the process is
the unit of state, so more worker processes would be more instances behind
one port.

| name | server |
|---|---|
| `gthread:N` | gunicorn, one worker with N threads (default `gthread:8`) |
| `sync` | gunicorn, one worker serving one request at a time, no keep-alive |
| `gevent` | gunicorn, one worker with greenlets (the `servers` extra) |
| `granian:N` | Granian (Rust), one WSGI worker with N blocking threads (the `servers` extra) |
| `uvicorn` | uvicorn, one ASGI process serving HTTP and the chat's WebSockets (labsite.asgi) |

Under gevent, Redis and memcached clients cooperate through gevent's
patched sockets; psycopg's libpq does not, so PostgreSQL calls block the
worker while they wait.

Only `uvicorn` serves WebSockets (ASGI). It starts with an open-file limit
of SOCKET_FILES (each socket is a file descriptor; 5,000 idle sockets per
instance is the target), a frame limit of 64 KiB (a larger frame closes
with 1009, as the site's own check does, without reading it into memory
first), and pings every 20 s (a dead peer is noticed). It trusts no
forwarded header itself: the site reads X-Forwarded-For from HAProxy alone
(labcore/proxy.py).
"""

import os
import resource
import sys

from deploy.errors import DeployError

DEFAULT = "gthread:8"
ASGI = ("uvicorn",)
SOCKET_FILES = 16384  # open files per ASGI instance: 5,000+ sockets, with room for the stores' connections
GRACEFUL_SECONDS = 10  # how long a stopping server waits for its requests (gunicorn) or connections (uvicorn)


def _gunicorn(app, host, port, worker):
    return [
        sys.executable, "-m", "gunicorn", app, "--bind", f"{host}:{port}", "--workers", "1", *worker,
        "--graceful-timeout", str(GRACEFUL_SECONDS),
        # Longer than HAProxy keeps an idle connection to an instance.
        "--keep-alive", "300",
        # Every instance would share gunicorn's one default control socket.
        "--no-control-socket",
    ]


def _uvicorn(host, port):
    return [
        "prlimit", f"--nofile={':'.join(map(str, socket_files()))}",
        sys.executable, "-m", "uvicorn", "labsite.asgi:application", "--host", host, "--port", str(port),
        "--ws-max-size", str(64 * 1024), "--ws-ping-interval", "20", "--ws-ping-timeout", "20",
        "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS), "--no-proxy-headers", "--no-access-log",
    ]


def socket_files():
    """(soft, hard) open-file limits for an ASGI instance: SOCKET_FILES, as far as this user may raise them.

    Root may raise the hard limit; anyone else gets up to the hard limit it has.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= SOCKET_FILES:
        return SOCKET_FILES, hard if hard != resource.RLIM_INFINITY else SOCKET_FILES
    if os.geteuid() == 0:
        return SOCKET_FILES, SOCKET_FILES
    return hard, hard


def is_asgi(server):
    """Whether server serves WebSockets (an ASGI server): only then has an instance a channel layer."""
    return server in ASGI


GEVENT_CONNECTIONS = 100  # greenlets per gevent worker
# Django's ASGI handler runs each request's sync work in a thread of its own, so an
# uvicorn instance's database connections are not bounded by a thread count: more
# than PostgreSQL is sized for per instance (deploy/sizing.py).
ASGI_CONNECTIONS = 64


def concurrency(server):
    """How many requests an instance under server serves at once: each may hold a database connection."""
    kind, _, threads = server.partition(":")
    return {"sync": 1, "gevent": GEVENT_CONNECTIONS, "uvicorn": ASGI_CONNECTIONS}.get(kind) or int(threads)


def argv(server, *, port, app="labsite.wsgi", host="127.0.0.1"):
    """The command that serves the WSGI module `app` (its `application`) on host:port, under server.

    `uvicorn` serves the site's ASGI application (labsite.asgi) whatever `app` says.
    """
    kind, _, threads = server.partition(":")
    if kind in ("gthread", "granian"):
        if not (threads.isdigit() and 1 <= int(threads) <= 64):
            raise DeployError(f"--server {server!r}: say the threads, from 1 to 64, as in {kind}:8")
    elif threads:
        raise DeployError(f"--server {server!r}: {kind} takes no thread count")
    if kind == "gthread":
        return _gunicorn(app, host, port, ["--worker-class", "gthread", "--threads", threads])
    if kind == "sync":
        return _gunicorn(app, host, port, ["--worker-class", "sync"])
    if kind == "gevent":
        return _gunicorn(app, host, port, ["--worker-class", "gevent", "--worker-connections", str(GEVENT_CONNECTIONS)])
    if kind == "uvicorn":
        return _uvicorn(host, port)
    if kind == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
                "--workers", "1", "--blocking-threads", threads, f"{app}:application"]
    raise DeployError(f"--server {server!r} is not one of: gthread:N, sync, gevent, granian:N, uvicorn")
