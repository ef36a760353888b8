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

Under gevent, Redis and memcached clients cooperate through gevent's
patched sockets; psycopg's libpq does not, so PostgreSQL calls block the
worker while they wait.
"""

import sys

from deploy.errors import DeployError

DEFAULT = "gthread:8"


def _gunicorn(app, host, port, worker):
    return [
        sys.executable, "-m", "gunicorn", app, "--bind", f"{host}:{port}", "--workers", "1", *worker,
        "--graceful-timeout", "10",
        # Longer than HAProxy keeps an idle connection to an instance.
        "--keep-alive", "300",
        # Every instance would share gunicorn's one default control socket.
        "--no-control-socket",
    ]


GEVENT_CONNECTIONS = 100  # greenlets per gevent worker


def concurrency(server):
    """How many requests an instance under server serves at once: each may hold a database connection."""
    kind, _, threads = server.partition(":")
    return {"sync": 1, "gevent": GEVENT_CONNECTIONS}.get(kind) or int(threads)


def argv(server, *, port, app="labsite.wsgi", host="127.0.0.1"):
    """The command that serves the WSGI module `app` (its `application`) on host:port, under server."""
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
    if kind == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
                "--workers", "1", "--blocking-threads", threads, f"{app}:application"]
    raise DeployError(f"--server {server!r} is not one of: gthread:N, sync, gevent, granian:N")
