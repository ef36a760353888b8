"""Servers alone: one server of a kind outside any cluster, for the benchmarks and the tests.

Started by the kind's own code (deploy/kinds/), with its credentials, on a
port the caller chose; the caller stops it. deploy.cluster re-exports these.
"""

import shutil
import signal

from deploy import kinds
from deploy.kinds.base import new_password
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
