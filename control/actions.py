"""POST /api/actions: one request of the page checked, recorded in the run, and carried out.

The answers are the interface's: the event id (202) once the action is
recorded; 400 naming a bad or missing field; 404 for a target the cluster
does not have; 409 for an action that makes no sense now (no cluster,
another start or stop under way, a fault deploy refuses in this state).
Every fault action is a row of deploy.cluster.ACTIONS, checked by
deploy's own check_action before anything runs; nothing here runs a shell.
A start's `env` may not set what changes which code a process runs (the
loader's and Python's variables, PATH, HOME, the settings module), so no
request chooses a command by that road either.
"""


from control.experiments import Experiment, argv_for
from control.load import MAX_USERS, Load
from deploy import cluster as deploy
from loadtest.harness.load import SITE_ENV

# The state a node is in once the fault took effect, as status observes it; a fault not listed took
# effect when deploy returned.
EFFECTS = {"kill": "down", "term": "down", "pause": "paused", "start": "up", "resume": "up"}
# Faults that last: a node's until the watcher sees it up again, a partition's until a heal.
LASTING = ("kill", "term", "pause", "partition")


class ActionError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def handle(room, body):
    """Carry out one request body (a dict); return the id of its event. ActionError for the answers but 202."""
    if not isinstance(body, dict):
        raise ActionError(400, "the body must be a JSON object")
    name = body.get("action")
    if not isinstance(name, str):
        raise ActionError(400, "'action' is missing: one of " + ", ".join(names()))
    if name == "up":
        return up(room, body.get("options", {}))
    if name == "down":
        return down(room)
    if name == "load":
        return load(room, body.get("users"))
    if name == "run":
        return run(room, body.get("experiment"), body.get("args", {}))
    if name in deploy.ACTIONS:
        fields = {key: value for key, value in body.items() if key not in ("action", "target")}
        return fault(room, name, body.get("target"), fields)
    raise ActionError(400, f"no action {name!r}; the actions are: {', '.join(names())}")


def names():
    return ["up", "down", "load", "run", *deploy.ACTIONS]


def up(room, options):
    if not isinstance(options, dict):
        raise ActionError(400, "'options' must be a JSON object of deploy up's options")
    options = dict(options)
    options.setdefault("port", deploy.free_base_port())
    options.setdefault("env", [f"{name}={value}" for name, value in SITE_ENV.items()])
    try:
        keywords = deploy.up_keywords(deploy.up_options(options))
    except deploy.DeployError as exc:
        raise ActionError(400, str(exc)) from None
    with room.lock:
        _not_busy(room)
        if room.cluster is not None:
            raise ActionError(409, f"a cluster is already up at {room.cluster['url']}; stop it first")
        try:
            deploy.check_up(**keywords, state_dir=room.state_dir)
        except deploy.DeployError as exc:
            raise ActionError(400, str(exc)) from None
        room.close_run()
        room.open_run("up")
        event = room.run.action("up", options=options)
        run = room.run
        room.in_background("up", lambda: (deploy.up(**keywords, state_dir=room.state_dir),
                                          run.sample(condition="cluster up")))
        return event


def down(room):
    with room.lock:
        _not_busy(room)
        if room.cluster is None:
            raise ActionError(409, "no cluster is up")
        event = room.run.action("down")

        def work():
            with room.lock:  # stopped outside the lock: it joins the users and reads every session back
                current, room.load = room.load, None
            if current:
                current.stop()
            deploy.down(room.state_dir)
            with room.lock:
                room.run.sample(condition="cluster down")
                room.let_go()

        room.in_background("down", work)
        return event


def load(room, users):
    if not isinstance(users, int) or isinstance(users, bool) or users < 0:
        raise ActionError(400, "'users' must be a whole number of users, 0 to stop the load")
    if users > MAX_USERS:
        raise ActionError(400, f"'users' is at most {MAX_USERS} (the control room's bound)")
    with room.lock:
        _not_busy(room)
        if room.cluster is None:
            raise ActionError(409, "no cluster is up: start one first")
        if users == 0 and room.load is None:
            raise ActionError(409, "no load is running")
        event = room.run.action("load", users=users)
        if users == 0:
            current, room.load = room.load, None
            room.in_background("load", current.stop)
            return event
        if room.load is None:
            room.load = Load(room.run, url=room.cluster["url"], state_dir=room.state_dir)
        room.in_background("load", lambda: room.load.resize(users))
        return event


def run(room, experiment, args):
    """Start a harness experiment; its id is the run's (the experiment writes its own history's events)."""
    try:
        argv = argv_for(experiment, args)
    except ValueError as exc:
        raise ActionError(400, str(exc)) from None
    with room.lock:
        if room.experiment and room.experiment.running():
            raise ActionError(409, f"the experiment {room.experiment.id} is still running")
        room.experiment = Experiment(experiment, argv, room.runs_dir)
        if room.run:
            room.run.action("run", experiment=experiment, args=args, run=room.experiment.id)
        return room.experiment.id


def fault(room, name, target, fields):
    _check_target(name, target, fields)
    try:
        deploy.check_action(name, target, fields)
    except deploy.DeployError as exc:
        raise ActionError(400, str(exc)) from None
    with room.lock:
        if room.cluster is None:
            raise ActionError(409, "no cluster is up: start one first")
        for node in [] if target is None else [target] if isinstance(target, str) else target:
            if not _known(room, name, node):
                raise ActionError(404, f"no node {node!r}; the nodes are: "
                                       + ", ".join(n["name"] for n in room.nodes if n["kind"] != "haproxy"))
        run = room.run
    event = run.fault(name, target)
    try:
        deploy.act(name, target, fields, state_dir=room.state_dir)
    except deploy.DeployError as exc:
        event["error"] = str(exc)
        run.ended(event)
        raise ActionError(409, str(exc)) from None
    with room.lock:
        if name == "heal":
            for partition in open_faults(run, "partition"):
                run.ended(partition)
        if name in EFFECTS and isinstance(target, str) and ":" not in target:
            room.effects.append((event, target, EFFECTS[name]))
        else:
            took_effect(run, event)
    return event["id"]


def took_effect(run, event):
    """Mark the fault as having taken effect now; one that does not last ends with it."""
    run.took_effect(event)
    if event["action"] not in LASTING:
        run.ended(event)


def open_faults(run, action=None):
    """The run's lasting faults (of one action, if given) that have not ended."""
    return [event for event in run.faults.values() if event["action"] in LASTING and event["ended"] is None
            and action in (None, event["action"])]


def _check_target(name, target, fields):
    """ActionError 400 unless the target is a string (for partition, a string or a list of strings, as `from`)."""
    def names(value):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    if name == "partition":
        if not (target is None or isinstance(target, str) or names(target)):
            raise ActionError(400, "partition's 'target' must be a node's name or a list of names")
        if "from" in fields and not names(fields["from"]):
            raise ActionError(400, "partition's 'from' must be a list of names")
    elif not (target is None or isinstance(target, str)):
        raise ActionError(400, f"{name}'s 'target' must be a node's name (a string)")


def _known(room, name, node):
    """Whether the cluster has this node, or an alias (redis:primary, ...) of a kind of node it has.

    A power loss takes a store's name as well: a server (`redis`,
    `postgres`) the cluster's store nodes are of.
    """
    names = [n["name"] for n in room.nodes if n["kind"] != "haproxy"]
    if node in names:
        return True
    if name == "powerloss":
        servers = {kind.server for kind in deploy.KINDS.values()}
        if node in servers and any(n["kind"] == node for n in room.nodes):
            return True
    aliases = {alias for kind in deploy.KINDS.values() for alias in kind.aliases}
    return node in aliases and any(name.startswith(node.split(":")[0]) for name in names)


def _not_busy(room):
    if room.busy:
        raise ActionError(409, f"the control room is busy with {room.busy!r}; try again when it is done")
