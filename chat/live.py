"""The WebSockets open in this process: how many, and their drain before a graceful stop.

/healthz reports the count as `"sockets"` (labcore/health.py), which
`deploy status` shows per instance. A graceful stop (deploy/sockets.py)
first takes the instance out of the load balancer, then sends it SIGUSR1:
every socket is closed with 1001 (going away), so that its client
reconnects through the load balancer to another instance and resumes,
and a socket that opens meanwhile is closed the same way. Without it,
uvicorn's own stop closes them with 1012 (service restart).

The handler is installed on the event loop by the first socket that
opens, so a process that never held one keeps SIGUSR1's default; deploy
asks only an instance that reports open sockets.
"""

import asyncio
import signal

GOING_AWAY = 1001
DRAIN_REASON = "this instance is stopping; reconnect"

_open = set()  # the consumers of the sockets open in this process
_draining = False
_handled = False  # the drain signal's handler is installed
_tasks = set()  # the drain, referenced while it runs


def count():
    return len(_open)


def draining():
    """Whether this process closes its sockets: a new one is closed at once, with 1001."""
    return _draining


def opened(consumer):
    """Count an accepted socket; the first one installs the drain signal's handler on this event loop."""
    global _handled
    if not _handled:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: _tasks.add(loop.create_task(drain())))
        except (RuntimeError, ValueError):
            pass  # a loop outside the main thread (a test's) takes no signals: nothing drains it
        _handled = True
    _open.add(consumer)


def closed(consumer):
    _open.discard(consumer)


async def drain():
    """Close every open socket with 1001, and every later one as it opens."""
    global _draining
    _draining = True
    for consumer in list(_open):
        await consumer.close(code=GOING_AWAY, reason=DRAIN_REASON)
