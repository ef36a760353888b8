"""The nemesis: faults on a schedule, each sent through deploy's fault vocabulary and recorded as it was observed.

A schedule is a list of Steps: (seconds after the schedule's start, action,
target, fields), in time order. check() refuses a bad schedule as a whole
before anything runs: each step through deploy's own table
(deploy.cluster.check_action: the action exists, takes a target or not,
takes these fields), `BROKEN` only after a step that breaks a node, and
every fault that lasts until mended (pause, partition) ended by its mending
step (resume of the same node, heal) later in the same schedule, so that no
schedule leaves a node frozen or cut off when it ends.

Every step is sent through deploy.cluster.act only, and becomes a "fault"
event of the run's history (history.py): `sent`, then `effect` when it was
first seen to hold (effects.py, polled every POLL s until `deadline`, the
end of the poll that saw it), or null when it never was (the run goes on;
a refusal from deploy is kept as a sample naming the fault's id), and
`ended`: for a fault that lasts (kill, term, pause, partition) when its
mending step (start of the same node, resume, heal) took effect, for any
other step the moment it took effect itself. Steps run one after another:
a step starts at its time or, if later, once the step before it took
effect or gave up; so a rolling restart's next stop waits until HAProxy
has the instance restarted before it UP again.
"""

import time
from dataclasses import dataclass, field

from deploy import cluster
from loadtest.harness import effects

BROKEN = "the node broken first"  # a target: the node the first step with a target acted on
MENDED_BY = {"kill": "start", "term": "start", "pause": "resume", "partition": "heal"}
MUST_END = ("pause", "partition")
POLL = 0.1  # seconds between two observations of a fault's effect
EFFECT_DEADLINE = 60.0  # seconds a fault may take to be seen holding (a busy two-core machine)


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the schedule's start
    action: str  # a name of deploy.cluster.ACTIONS
    target: object = None  # an instance or store node, an alias (redis:primary), BROKEN; a partition: a list
    fields: dict = field(default_factory=dict)  # the action's fields: {"from": [...]}, {"count": 2}, ...


def check(schedule, nodes=None):
    """The schedule as Steps, if it can run as a whole; ValueError naming the first step that cannot.

    nodes: the names a target may take (nodes_of()), when the cluster is known.
    """
    steps = [step if isinstance(step, Step) else Step(*step) for step in schedule]
    first = next((n for n, step in enumerate(steps) if step.target not in (None, BROKEN)), None)
    for n, step in enumerate(steps):
        where = f"step {n + 1} ({step.action} at {step.at} s)"
        if isinstance(step.at, bool) or not isinstance(step.at, int | float) or step.at < 0:
            raise ValueError(f"{where}: its time must be seconds after the schedule's start, 0 or more")
        if n and step.at < steps[n - 1].at:
            raise ValueError(f"{where}: the steps must be in time order (the one before it is at "
                             f"{steps[n - 1].at} s)")
        if step.target == BROKEN and (first is None or first >= n):
            raise ValueError(f"{where}: names the node broken first, but no step before it names a node")
        try:
            cluster.check_action(step.action, step.target, step.fields)
        except cluster.DeployError as refused:
            raise ValueError(f"{where}: {refused}") from None
        unknown = [name for name in _names(step.target or ()) + _names(step.fields.get("from", ()))
                   if nodes is not None and name != BROKEN and name not in nodes]
        if unknown:
            raise ValueError(f"{where}: the cluster has no {', '.join(unknown)}; it has: {', '.join(sorted(nodes))}")
    first_target = None if first is None else steps[first].target
    for n, step in enumerate(steps):
        if step.action in MUST_END and not any(_mends(later, step, first_target) for later in steps[n + 1:]):
            raise ValueError(f"step {n + 1} ({step.action} at {step.at} s): no later step ends it "
                             f"({MENDED_BY[step.action]}{'' if step.action == 'partition' else ' ' + step.target})")
    return steps


def nodes_of(state_dir):
    """The names a step may target in the cluster in state_dir: its store nodes, every instance slot, the aliases."""
    recorded = cluster.require_cluster(state_dir)
    aliases = [alias for kind in cluster.KINDS.values() for alias in kind.aliases]
    return {*recorded.stores, *(f"app{n}" for n in range(1, cluster.MAX_INSTANCES + 1)), *aliases}


def rolling_restart(instances, *, start=0.0, spacing=0.0):
    """Each instance in turn stopped gracefully (term) and started again, the next `spacing` s after the last.

    The everyday deploy. `term` takes the instance out of HAProxy and waits
    for its requests before SIGTERM; the start waits until it answers and
    HAProxy has it UP, and the next instance's stop waits for that, so one
    instance at most is out at any moment.
    """
    if len(instances) < 2:
        raise ValueError("a rolling restart needs at least 2 instances: with one, nothing serves while it restarts")
    return [step for n, name in enumerate(instances)
            for step in (Step(start + n * spacing, "term", name), Step(start + n * spacing, "start", name))]


class Nemesis:
    """Sends faults into the cluster in state_dir and records each in `history`, as observed.

    One Nemesis per cluster: it remembers the node broken first (BROKEN)
    and the faults that last until mended, across run() and act() calls.
    """

    def __init__(self, history, *, state_dir, deadline=EFFECT_DEADLINE):
        self.history, self.state_dir, self.deadline = history, state_dir, deadline
        self.broken = None
        self.lasting = []  # fault events (kill, term, pause, partition) whose mending step has not taken effect

    def run(self, schedule, *, started=None, waiting=None):
        """Run the schedule, checked first against the cluster (check()); return its fault events.

        Each step at `started` + its time, or once the step before it ended.

        started: on the history's clock (history.now()); default now.
        waiting(step): called at least once a second while the next step's
        time has not come (progress, a check that the load still runs); what
        it raises ends the run.
        """
        steps = check(schedule, nodes_of(self.state_dir))
        started = self.history.now() if started is None else started
        events = []
        for step in steps:
            while (left := started + step.at - self.history.now()) > 0:
                if waiting:
                    waiting(step)
                time.sleep(min(left, 1.0))
            events.append(self.act(step.action, step.target, step.fields))
        return events

    def act(self, action, target=None, fields=None):
        """One fault now, for an experiment whose next step depends on what it observes; return its event.

        An action or field deploy's table does not allow raises DeployError
        before anything is sent; what deploy refuses when it acts (a node
        already running, no primary to resolve an alias to) is recorded as a
        sample naming the fault, not raised, and the fault keeps effect null.
        """
        fields = dict(fields or {})
        cluster.check_action(action, target, fields)
        named = self.broken if target == BROKEN else target
        try:
            node = [cluster.resolve(n, state_dir=self.state_dir) for n in _names(named)] if action == "partition" \
                else named and cluster.resolve(named, state_dir=self.state_dir)
            before = effects.before(action, state_dir=self.state_dir)
        except cluster.DeployError as refused:
            event = self.history.fault(action, named)
            self.history.sample(fault=event["id"], refused=str(refused))
            return event
        event = self.history.fault(action, _recorded(action, node, fields))
        try:
            cluster.act(action, node, fields, state_dir=self.state_dir)
        except cluster.DeployError as refused:
            self.history.sample(fault=event["id"], refused=str(refused))
            return event
        if isinstance(node, str) and self.broken is None:
            self.broken = node
        at = self._observe(action, node, fields, before)
        if at is None:
            return event
        if action == "promote":  # the node it promoted, which deploy chose
            event["target"] = ", ".join(sorted(effects.before(action, state_dir=self.state_dir) - before))
        if action in MENDED_BY:
            self.lasting.append(event)
        else:
            event["ended"] = at
        self.history.took_effect(event, at)
        for mended in [e for e in self.lasting if _mended_by(e, action, node)]:
            self.lasting.remove(mended)
            self.history.ended(mended)
        return event

    def _observe(self, action, node, fields, before):
        """When the fault was first seen to hold (history clock), or None if not within the deadline."""
        deadline = time.monotonic() + self.deadline
        while True:
            try:
                held = effects.seen(action, node, fields, state_dir=self.state_dir, before=before)
            except (cluster.DeployError, OSError):
                held = False
            if held:
                return self.history.now()
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)


def _names(value):
    return [value] if isinstance(value, str) else list(value)


def _recorded(action, node, fields):
    """The fault's target as the history keeps it: the node acted on; a partition's two sides."""
    if action == "partition":
        return {"isolated": node, "from": _names(fields.get("from", ()))}
    return node


def _mends(later, step, first_target):
    """Whether the later step ends the lasting `step` (a resume of the same node; any heal of a partition)."""
    if later.action != MENDED_BY[step.action]:
        return False
    return step.action == "partition" or (first_target if later.target == BROKEN else later.target) == step.target


def _mended_by(event, action, node):
    if MENDED_BY.get(event["action"]) != action:
        return False
    return action == "heal" or event["target"] == node
