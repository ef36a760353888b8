"""Whether a fault has taken effect, as the cluster shows it: deploy's answer is that it was sent, not that it holds.

seen() is one observation, true once the action's result can be seen from
outside: a killed or stopped instance's process is gone and HAProxy has it
out of rotation (not UP); a killed store node's process is gone; a started
or resumed instance runs, answers /healthz and is UP in HAProxy; a started
or resumed store node runs and answers its role; a paused node is stopped
(the kernel's state T) and does not answer (an instance's /healthz, a store
node's role); a partition's drop rules are in every isolated node's
namespace, and a heal left none anywhere; a promotion shows a primary that
was not one before; a scale shows that many instances, every one UP; a
latency shows in the node's status row; a stall holds once deploy's call
returns (its relays are told before it does).
Under Docker Swarm an instance is a task that Swarm replaces at once, and
the host cannot reach the stack's overlay network: a kill holds once its
slot shows another container than before (or none running), and a start
once HAProxy, which is inside that network, has the task UP.
memcached's status names a role without asking the node (deploy's default
for a server alone), so for it the kernel's stopped state stands for
"does not answer".
"""

import requests

from deploy import cluster

PROBE_TIMEOUT = 1  # seconds an instance's /healthz may take before it counts as not answering
SILENT = ("down", "unreachable")  # a store node's role when it gave no answer
NOT_ASKED = ("memcached",)  # kinds whose status role is not the node's own answer


def before(action, *, state_dir):
    """What seen() compares with, taken before the action is sent: the primaries, for a promotion; under Docker
    Swarm, each instance's container, for a kill or a stop."""
    if action == "promote":
        return _primaries(cluster.status(state_dir=state_dir))
    recorded = cluster.load(state_dir) if action in ("kill", "term") else None
    if recorded is not None and recorded.runs_on == "swarm":
        return {row["name"]: row["container"] for row in cluster.status(state_dir=state_dir)["instances"]}
    return None


def seen(action, target, fields, *, state_dir, before=None):
    """Whether the action on target (a node's name, or for a partition a list) is seen to hold now."""
    if action in ("partition", "heal"):
        return _rules_in_place(target if action == "partition" else None, state_dir)
    return holds(action, target, fields, cluster.status(state_dir=state_dir), before)


def holds(action, target, fields, status, before=None):
    """Whether the action on the node `target` holds in `status` (deploy's status --json), every action but a
    partition's and a heal's."""
    if action == "promote":
        return bool(_primaries(status) - before)
    if action == "scale":
        return len(status["instances"]) == fields["count"] and all(
            row["lb_state"] == "UP" for row in status["instances"])
    if action == "latency":
        return any(row["name"] == target and row.get("latency_ms") == fields["ms"]
                   for row in [*status["instances"], *status["stores"]])
    if action == "stall":
        return True  # the relays hold the node's traffic from the moment deploy's call returns
    for row in status["instances"]:
        if row["name"] == target:
            return _instance(action, row, swarm=status.get("runtime") == "swarm", containers=before)
    for row in status["stores"]:
        if row["name"] == target:
            return _store(action, row)
    return False


def answers(row):
    """Whether an instance (its status row) answers /healthz with 200 within PROBE_TIMEOUT."""
    try:
        return requests.get(f"http://{row['host']}:{row['port']}/healthz", timeout=PROBE_TIMEOUT).status_code == 200
    except requests.RequestException:
        return False


def _instance(action, row, *, swarm, containers):
    """swarm: the cluster runs on Docker Swarm; containers: then each instance's container before a kill or a stop."""
    if action in ("kill", "term"):
        if swarm:
            return not row["alive"] or row["container"] != containers.get(row["name"])
        return not row["alive"] and row["lb_state"].split(" ")[0] in ("DOWN", "MAINT")
    if action == "pause":
        return row["state"] == "paused" and not answers(row)
    # start, resume
    return row["alive"] and row["state"] != "paused" and row["lb_state"] == "UP" and (swarm or answers(row))


def _store(action, row):
    if action == "kill":
        return not row["alive"]
    if action == "pause":
        return row["state"] == "paused" and (row["role"] in SILENT or row["kind"] in NOT_ASKED)
    return row["alive"] and row["state"] != "paused" and row["role"] not in SILENT  # start, resume


def _primaries(status):
    return {row["name"] for row in status["stores"] if row["role"] == "primary"}


def _rules_in_place(isolated, state_dir):
    """Partition (isolated: names): each has drop rules. Heal (None): no namespace of the cluster has any."""
    recorded = cluster.load(state_dir)
    network = recorded.net if recorded else None
    if network is None:
        return False
    names = [isolated] if isinstance(isolated, str) else isolated
    try:
        if names is not None:
            return all(cluster.netns.rules(network, name) for name in names)
        return not any(cluster.netns.rules(network, name) for name in network.nodes)
    except cluster.DeployError:  # a namespace being made or removed: not seen yet
        return False
