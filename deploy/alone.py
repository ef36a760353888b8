"""Servers alone: one server of a kind outside any cluster, for the benchmarks and the tests.

Started by the kind's own code (deploy/kinds/), with its credentials, on a
port the caller chose; the caller stops it. deploy.cluster re-exports these.
"""

import shutil
import signal
import tempfile
from pathlib import Path

from deploy import kinds, latency
from deploy.kinds.base import LOOPBACK, new_password
from deploy.processes import stop


def start_server(kind, *, port, state_dir, password=None, durable=True):
    """Start one server of a kind (KINDS) outside any cluster, for a benchmark or a test; return its record.

    password: its credentials (a new one by default; kept by a caller that starts it again).
    """
    return kinds.alone(kind).start_alone(port=port, state_dir=state_dir, password=password or new_password(),
                                         durable=durable)


def server_settings(kind, record):
    """{setting: value} that points the site at one server of a kind, credentials included."""
    return kinds.alone(kind).settings(record)


def stop_server(kind, record, *, crash=False):
    """Stop a server start_server started (SIGKILL if crash) and remove its data folder."""
    stop(record, sig=signal.SIGKILL if crash else kinds.alone(kind).stop_signal)
    if "data" in record:
        shutil.rmtree(record["data"], ignore_errors=True)


def start_relay(targets, *, state_dir, delays=None):
    """A latency relay (deploy/latency.py) in front of servers alone, {name: port} on loopback: each route on a
    free port of its own, delayed by delays[name] ms each way (0 without). Return its record, with "ports":
    {name: the port to reach that server through the relay}; stop it with stop_relay."""
    folder = tempfile.mkdtemp(prefix="lab-relay-")  # short: a UNIX socket's path has at most 107 bytes
    try:
        record = latency.start({name: ((LOOPBACK, 0), (LOOPBACK, port)) for name, port in targets.items()},
                               control=f"{folder}/control", log_path=Path(state_dir) / "relay.log")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    record["folder"] = folder
    try:
        for name, ms in (delays or {}).items():
            latency.set_delay(record["control"], ms, route=name)
        record["ports"] = {name: route["listen"][1] for name, route in latency.status(record["control"]).items()}
    except BaseException:
        stop_relay(record)
        raise
    return record


def stop_relay(record):
    """Stop a relay start_relay started, and remove its control socket's folder."""
    latency.stop(record)
    shutil.rmtree(record["folder"], ignore_errors=True)
