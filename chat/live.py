"""The WebSockets open in this process: how many, and their drain before a graceful stop.

/healthz reports the count as `"sockets"` (labcore/health.py), which
`deploy status` shows per instance. A graceful stop (deploy/sockets.py)
first takes the instance out of the load balancer, then sends it SIGUSR1:
every socket is closed with 1001 (going away), so that its client
reconnects through the load balancer to another instance and resumes,
and a socket that opens meanwhile is closed the same way. Without it,
uvicorn's own stop closes them with 1012 (service restart).

The handler is installed when an ASGI process imports the site
(labsite/asgi.py; labcore's on_serve, asgi_only), so that deploy may send
the signal whenever it stops an instance, sockets or not. A WSGI server
has no sockets, and its SIGUSR1 (gunicorn: reopen the logs) is left alone.
"""

import asyncio
import signal

GOING_AWAY = 1001
DRAIN_REASON = "this instance is stopping; reconnect"

_open = set()  # the consumers of the sockets open in this process
_draining = False
_tasks = set()  # the drain, referenced while it runs


def count():
    return len(_open)


def draining():
    """Whether this process closes its sockets: a new one is closed at once, with 1001."""
    return _draining


def opened(consumer):
    _open.add(consumer)


def closed(consumer):
    _open.discard(consumer)


def install():
    """Have SIGUSR1 drain this process's sockets: from the main thread, as the ASGI application is imported."""
    signal.signal(signal.SIGUSR1, _drain_soon)


def _drain_soon(signum, frame):
    """The signal's handler: it runs in the main thread, where the server's event loop runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not serving yet, or no longer: no socket to close
    task = loop.create_task(drain())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def drain():
    """Close every open socket with 1001, and every later one as it opens.

    All at once: a close waits for its client's answer (up to the server's
    close timeout), so one after another a slow client held up the rest,
    and one already gone (its close raises) stopped the drain, leaving the
    others to uvicorn's 1012.
    """
    global _draining
    _draining = True
    await asyncio.gather(*(consumer.close(code=GOING_AWAY, reason=DRAIN_REASON) for consumer in list(_open)),
                         return_exceptions=True)
