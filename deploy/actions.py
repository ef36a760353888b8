"""The fault vocabulary: every action that breaks or mends a running cluster, by name, with its fields.

One table for every caller: the experiments' fault schedules, the control
room's `POST /api/actions` and anything else that acts by name. Each entry
says whether the action takes a target (an instance, a store node, or an
alias such as `redis:primary`) and which fields it accepts with their
types, so a caller can check a request before anything runs, and `act()`
refuses what the table does not allow with a DeployError naming the field.
A later action joins by adding its row.
"""

from dataclasses import dataclass, field

from deploy import faults, links, stores
from deploy.errors import DeployError
from deploy.record import DEFAULT_STATE_DIR, load


@dataclass(frozen=True)
class Action:
    name: str
    run: object  # run(target, fields, state_dir) -> what was done, in words
    target: bool = True  # whether it acts on a named node
    fields: dict = field(default_factory=dict)  # {name: type} accepted besides the target
    required: tuple = ()  # fields that must be given


def _names(value):
    return [value] if isinstance(value, str) else list(value)


def _kill(target, fields, state_dir):
    process = fields.get("process")
    killed = faults.kill(target, process=process, state_dir=state_dir) or target
    return f"{killed}'s {process} killed" if process else f"{killed} killed"


def _term(target, fields, state_dir):
    return f"{faults.kill(target, graceful=True, state_dir=state_dir) or target} stopped gracefully"


def _start(target, fields, state_dir):
    return f"{faults.start(target, state_dir=state_dir) or target} started"


def _pause(target, fields, state_dir):
    return f"{faults.pause(target, state_dir=state_dir)} paused"


def _resume(target, fields, state_dir):
    return f"{faults.pause(target, resume=True, state_dir=state_dir)} resumed"


def _partition(target, fields, state_dir):
    made = faults.partition(_names(target), _names(fields.get("from", ())), state_dir=state_dir)
    return f"{', '.join(made['isolated'])} cut off from {', '.join(made['from']) or 'everything else'}"


def _powerloss(target, fields, state_dir):
    lost = faults.power_loss(target, state_dir=state_dir)
    return "; ".join(f"{node} lost {what['bytes_written']} bytes in {what['files']} files, started again"
                     for node, what in lost.items())


def _heal(target, fields, state_dir):
    return f"healed {faults.heal(state_dir=state_dir)} partitions"


def _promote(target, fields, state_dir):
    return f"{faults.promote(force=fields.get('force', False), state_dir=state_dir)} is the primary now"


def _scale(target, fields, state_dir):
    return f"{len(faults.scale(fields['count'], state_dir=state_dir).instances)} instances"


def _latency(target, fields, state_dir):
    cluster = faults.require_cluster(state_dir)
    node = stores.resolve(cluster, target.strip())
    links.set_latency(cluster, node, fields["ms"], fields.get("jitter", 0))
    jitter = f" (jitter {fields['jitter']:g} ms)" if fields.get("jitter") else ""
    return f"{node}: {fields['ms']:g} ms each way{jitter}" if fields["ms"] else f"{node}: no latency"


def _stall(target, fields, state_dir):
    cluster = faults.require_cluster(state_dir)
    node = stores.resolve(cluster, target.strip())
    links.stall(cluster, node, fields["seconds"])
    return f"{node} stalled for {fields['seconds']:g} s"


ACTIONS = {action.name: action for action in (
    Action("kill", _kill, fields={"process": str}),
    Action("term", _term),
    Action("start", _start),
    Action("pause", _pause),
    Action("resume", _resume),
    Action("partition", _partition, fields={"from": list}),
    Action("heal", _heal, target=False),
    Action("powerloss", _powerloss),
    Action("promote", _promote, target=False, fields={"force": bool}),
    Action("scale", _scale, target=False, fields={"count": int}, required=("count",)),
    Action("latency", _latency, fields={"ms": float, "jitter": float}, required=("ms",)),
    Action("stall", _stall, fields={"seconds": float}, required=("seconds",)),
)}


def check(name, target=None, fields=None):
    """The Action `name` if target and fields fit it; DeployError naming what does not."""
    fields = fields or {}
    action = ACTIONS.get(name)
    if action is None:
        raise DeployError(f"no action {name!r}; the actions are: {', '.join(ACTIONS)}")
    if action.target and not target:
        raise DeployError(f"{name} needs a target: an instance or a store node")
    if not action.target and target:
        raise DeployError(f"{name} takes no target")
    if target and not (isinstance(target, str) or name == "partition" and _names_list(target)):
        raise DeployError(f"{name}'s target must be a name" + (" or a list of names" if name == "partition" else ""))
    for key, value in fields.items():
        wanted = action.fields.get(key)
        if wanted is None:
            raise DeployError(f"{name} takes no field {key!r}"
                              + (f"; it takes: {', '.join(action.fields)}" if action.fields else ""))
        accepted = (int, float) if wanted is float else wanted  # a whole number is a number too
        if not isinstance(value, accepted) or (wanted in (int, float) and isinstance(value, bool)) \
                or (wanted is list and not _names_list(value)):
            raise DeployError(f"{name}'s {key!r} must be "
                              + {list: "a list of names", float: "a number"}.get(wanted, wanted.__name__))
    missing = [key for key in action.required if key not in fields]
    if missing:
        raise DeployError(f"{name} needs {', '.join(repr(key) for key in missing)}")
    return action


def _names_list(value):
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# What a cluster on Docker Swarm can do (deploy/swarm.py): Swarm owns its containers' lives.
SWARM_ACTIONS = ("kill", "start")


def act(name, target=None, fields=None, *, state_dir=DEFAULT_STATE_DIR):
    """Run the action `name` on target with fields, checked first (check()); return what was done, in words."""
    action = check(name, target, fields)
    cluster = load(state_dir)
    if cluster and cluster.runs_on == "swarm" and name not in SWARM_ACTIONS:
        raise DeployError(f"{name} is not offered under --runtime swarm (it acts on host processes or the lab's "
                          f"namespaces); there: {', '.join(SWARM_ACTIONS)}")
    return action.run(target, fields or {}, state_dir)
