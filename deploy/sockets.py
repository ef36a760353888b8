"""The instances' WebSockets: which channel layer they share, how many sockets each holds, and their drain.

Only an ASGI server (deploy/web.py: `uvicorn`) serves WebSockets, so only
there has a cluster a channel layer: `memory` (each instance reaches only
its own sockets) or `redis` (every instance's, through the cluster's Redis,
alone or under Sentinel, with the addresses, credentials and Sentinel
settings the site's other Redis users get). The default follows presence,
as the site's own setting does (labcore/config.py): `redis` when presence
is in Redis, `memory` otherwise. channels-redis cannot use Redis Cluster.

A graceful stop drains an instance's sockets after HAProxy stopped sending
it anything new (deploy/apps.py's take_out): SIGUSR1 makes the site close
each with 1001 (going away; chat/live.py, which handles it from the start
of an ASGI process), and the stop waits, up to DRAIN_SECONDS, until the
instance reports none open. uvicorn's own stop would close them with 1012.
The count is read from the instance itself: its /healthz answers
`"sockets"`, the WebSockets open in that process now.
"""

import json
import signal
import urllib.request

from deploy import web
from deploy.errors import DeployError
from deploy.processes import signal_group, wait_for
from labcore import registry

LAYERS = ("memory", "redis")
DRAIN_SECONDS = 10  # for an instance to close its sockets once asked


def plan_layer(layer, *, server, presence, topology):
    """The channel layer a cluster's instances use ("" under a WSGI server); DeployError for one they cannot."""
    if not web.is_asgi(server):
        if layer:
            raise DeployError(f"--channel-layer is for an ASGI server, which serves WebSockets: --server {server} "
                              f"is WSGI and has no sockets; add --server uvicorn")
        return ""
    in_redis = registry.presence_store(presence).name == "redis" and topology.redis != "cluster"
    layer = layer or ("redis" if in_redis else "memory")
    if layer not in LAYERS:
        raise DeployError(f"--channel-layer {layer!r} is not one of: {', '.join(LAYERS)}")
    if layer == "redis" and topology.redis == "cluster":
        raise DeployError("--channel-layer redis cannot use Redis Cluster (--redis cluster): channels-redis speaks "
                          "to one Redis or to Sentinel; choose --channel-layer memory, or --redis single or sentinel")
    return layer


def servers_for_layer(layer, servers):
    """The servers a cluster starts, with Redis added when the Redis layer needs it and nothing else does."""
    return [*servers, "redis"] if layer == "redis" and "redis" not in servers else servers


def open_sockets(cluster, name, record):
    """The WebSockets open in instance `name` now, as its /healthz says; None when it does not answer."""
    if cluster.state(name, record) in ("down", "paused"):
        return None
    try:
        with urllib.request.urlopen(f"{cluster.instance_url(name)}/healthz", timeout=1) as response:
            return json.load(response).get("sockets")
    except (OSError, ValueError):
        return None


def drain(cluster, name):
    """Have an ASGI instance close its sockets with 1001 and wait until none is open (or DRAIN_SECONDS pass).

    Called once HAProxy sends it nothing new, before it is stopped.
    """
    record = cluster.instances[name]
    if not web.is_asgi(cluster.server):
        return
    signal_group(record["pid"], signal.SIGUSR1)
    try:
        # None (no answer within a second: a busy instance) is not "none open": ask again.
        wait_for(lambda: open_sockets(cluster, name, record) == 0, timeout=DRAIN_SECONDS, interval=0.1,
                 what=f"{name} to close its sockets")
    except DeployError:
        pass  # the stop closes what is left (uvicorn: with 1012)
