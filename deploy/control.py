"""A helper process's control socket: a UNIX stream socket taking one JSON object per line, answering one line each.

The latency relay (deploy/latency.py) and the power-loss file system
(deploy/powerloss.py) both take requests this way. A request is a JSON
object such as {"op": "status"}; its answer is {"ok": true, ...} or
{"ok": false, "error": "..."}. A socket is created with the process's umask
(077 under deploy): only its user can send requests.
"""

import json
import socket
from pathlib import Path

from deploy import processes
from deploy.processes import DeployError


def answer(handle, line):
    """The answer line to the request `line`: handle(request) -> dict, its ValueError as {"ok": false, "error"}."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object, e.g. {\"op\": \"status\"}")
        reply = {"ok": True, **handle(request)}
    except ValueError as error:  # json.JSONDecodeError is one
        reply = {"ok": False, "error": str(error)}
    return json.dumps(reply).encode() + b"\n"


def request(path, message, *, what, timeout=5):
    """Send one request to the control socket at `path`; return its answer, or DeployError naming `what`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline() or b"{}")
    except OSError as error:
        raise DeployError(f"{what} at {path} does not answer: {error}") from None
    if not reply.get("ok"):
        raise DeployError(f"{what}: {reply.get('error', 'no answer')}")
    return reply


def wait_started(record, *, log_path, what, ready, waiting_for, timeout, undo):
    """Return once ready() is truthy (a DeployError from it means not yet), as the process of record starts.

    DeployError with its log's last line if the process exits first, or
    after timeout seconds; either way undo(record) first.
    """
    def answers():
        if not processes.running(record):
            log = Path(log_path).read_text(errors="replace").strip().splitlines()
            raise DeployError(f"{what} exited: {log[-1] if log else 'no output'} (log: {log_path})")
        try:
            return ready()
        except DeployError:
            return None

    try:
        processes.wait_for(answers, timeout=timeout, what=waiting_for)
    except BaseException:
        undo(record)
        raise
