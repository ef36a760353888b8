"""The kill experiment's run of one configuration: a cluster, a Locust load, a fault schedule, an audit.

The store faults (store-kill, store-pause, replica-kill, store-restart) aim
at the configuration's store instead of an instance, and turn on what
counts session writes: a session write on every tick, a burst of logins
around the fault, and reading every user's session back after the run
(loadtest/harness/sessions.py); `--session-writes` turns it on under an
instance fault too.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deploy import cluster as deploy
from labcore import registry
from loadtest.experiments.configs import up
from loadtest.harness import history
from loadtest.harness.audit import audit_messages
from loadtest.harness.locust import (
    STOP_TIMEOUT,
    TAIL,
    alive,
    processes_for,
    read_recording,
    start_locust,
    stop_locust,
    wait_locust,
    wait_until,
)
from loadtest.harness.nemesis import BROKEN, Nemesis, Step, check, rolling_restart
from loadtest.harness.sampler import Sampler
from loadtest.harness.sessions import read_back
from loadtest.reports.page import machine

INSTANCE_FAULTS = ("kill", "term", "scale", "kills", "rolling-restart")
STORE_FAULTS = ("store-kill", "store-pause", "replica-kill", "store-restart", "store-latency", "store-stall")
# store-latency: the first primary this far away (each way) from 1/3 to 2/3; store-stall: it delivers
# nothing this long at 1/3, its connections open (deploy/links.py through deploy.cluster.act).
LATENCY_MS = 20
STALL_SECONDS = 5
# A paused primary stays frozen this long: longer than Sentinel takes to notice
# it and promote a replica, so that it wakes up demoted.
PAUSE_SECONDS = 2 * deploy.SENTINEL_FAILOVER_SECONDS


def fault_schedule(kind, duration, instances, config=None, runtime="processes"):
    """Return the nemesis's schedule (loadtest/harness/nemesis.py): Steps at seconds into the measured window.

    The store faults aim at the configuration's store (see store_of):
    `redis:primary` / `pg:primary` name whichever node is primary when the
    fault lands, and BROKEN the node it hit. The rolling restart stops and
    starts each instance in turn over the middle third. Under Docker Swarm
    (runtime "swarm") only `kill`: Swarm replaces the task at once, so its
    `start` follows the kill straight away and waits until the replacement
    serves (the fault's `took` is that time).
    """
    third = duration / 3
    if runtime == "swarm":
        if kind != "kill":
            raise ValueError(f"under --runtime swarm the fault schedule is kill, not {kind!r}")
        return check([Step(third, "kill", "app1"), Step(third, "start", "app1")])
    if kind in STORE_FAULTS:
        return check(_store_schedule(kind, third, config))
    if kind not in INSTANCE_FAULTS:
        raise ValueError(f"fault schedule {kind!r} is not one of {', '.join(INSTANCE_FAULTS + STORE_FAULTS)}")
    if kind in ("scale", "kills", "rolling-restart") and instances < 2:
        raise ValueError(f"the {kind!r} schedule needs at least 2 instances")
    names = [f"app{n}" for n in range(1, instances + 1)]
    schedules = {
        "kill": lambda: [Step(third, "kill", "app1"), Step(2 * third, "start", "app1")],
        "term": lambda: [Step(third, "term", "app1"), Step(2 * third, "start", "app1")],
        "scale": lambda: [Step(third, "scale", fields={"count": instances - 1}),
                          Step(2 * third, "scale", fields={"count": instances})],
        "kills": lambda: [Step(duration / 4, "kill", "app1"), Step(duration / 2, "kill", "app2"),
                          Step(3 * duration / 4, "start", "app1"), Step(3 * duration / 4, "start", "app2")],
        "rolling-restart": lambda: rolling_restart(names, start=third, spacing=third / instances),
    }
    return check(schedules[kind]())


# The node a store fault aims at as "the primary": an alias deploy resolves when the fault lands (an etcd
# cluster's leader: Raft's one node that takes writes), or memcached's one node by its name.
PRIMARY = {"pg": "pg:primary", "redis": "redis:primary", "etcd": "etcd:leader", "memcached": "memcached"}
# The faults that make sense on each store that is neither PostgreSQL nor Redis alone or under Sentinel: memcached
# listens on a UNIX socket (no latency relay to slow or stall it); etcd's members are peers, none a replica; a Redis
# Cluster's replicas are redis{shards+1}.. and its primary now (redis:primary) is one shard's of three.
ONLY = {"memcached": ("store-kill", "store-restart", "store-pause"),
        "etcd": ("store-kill", "store-restart", "store-pause", "store-latency", "store-stall"),
        "cluster": ("store-kill", "store-restart", "store-pause", "store-latency", "store-stall")}


def store_of(config):
    """The store a store fault breaks: PostgreSQL if the configuration has it; else the sessions' own server
    when it is etcd or memcached; else Redis (alone, under Sentinel, or one shard of a Redis Cluster)."""
    if config.db == "postgres":
        return "pg"
    needed = deploy.servers_for(sessions=config.sessions, presence=config.presence, db=config.db)
    sessions_on = registry.SESSION_STORES[config.sessions].servers
    if sessions_on and sessions_on[0] in ("etcd", "memcached"):
        return sessions_on[0]
    if "redis" not in needed:
        raise ValueError(f"{config.name}: none of PostgreSQL, Redis, etcd or memcached in it, so no store fault "
                         "can aim at it")
    return "redis"


def _store_schedule(kind, third, config):
    if config is None:
        return []  # checked per configuration when the run starts
    store = store_of(config)
    shape = "cluster" if store == "redis" and config.topology.redis == "cluster" else store
    if kind not in ONLY.get(shape, STORE_FAULTS):
        what = "a Redis Cluster" if shape == "cluster" else store
        raise ValueError(f"{config.name}: on {what} the store faults are {', '.join(ONLY[shape])}, not {kind}")
    primary = PRIMARY[store]
    replicas = {"pg": config.topology.pg_standbys,
                "redis": config.topology.redis_replicas if config.topology.redis == "sentinel" else 0}.get(store, 0)
    if kind == "store-kill":
        # Without Patroni nothing promotes PostgreSQL on its own: the experiment does it
        # at once, as an operator or a failover manager would. Under Patroni, Patroni does;
        # etcd's members elect a new leader, a Redis Cluster shard's replica promotes itself.
        by_hand = store == "pg" and replicas and config.topology.pg_ha != "patroni"
        promote = [Step(third, "promote")] if by_hand else []
        return [Step(third, "kill", primary), *promote, Step(2 * third, "start", BROKEN)]
    if kind == "store-pause":
        return [Step(third, "pause", primary), Step(third + PAUSE_SECONDS, "resume", BROKEN)]
    if kind == "replica-kill":
        if not replicas:
            raise ValueError(f"{config.name}: replica-kill needs replicas (a topology such as @sentinel-sync1, "
                             "@pg-any1 or @patroni)")
        return [Step(third, "kill", f"{store}2"), Step(2 * third, "start", BROKEN)]
    if kind == "store-latency":
        return [Step(third, "latency", f"{store}1", {"ms": LATENCY_MS}),
                Step(2 * third, "latency", f"{store}1", {"ms": 0})]
    if kind == "store-stall":
        return [Step(third, "stall", f"{store}1", {"seconds": STALL_SECONDS})]
    return [Step(third, "kill", primary), Step(third, "start", BROKEN)]


@dataclass
class Plan:
    """What a run does, built once from the arguments and saved as it is with the results."""

    configs: list
    users: int | None  # None: each configuration at `load` of its capacity step
    duration: float
    warmup: float
    faults: str
    instances: int
    port: int
    out: Path
    load: float = 0.6
    machine: str = field(default_factory=machine)
    runtime: str = "processes"  # deploy up --runtime: processes, or swarm (Docker Swarm services)
    # Write each session every tick and read it back, as the store faults do, under an instance fault too.
    session_writes: bool = False

    @property
    def writes_sessions(self):
        return self.session_writes or self.faults in STORE_FAULTS

    def seconds_per_config(self):
        return self.warmup + self.duration + TAIL + 20  # cluster up, audit and down

    def as_json(self):
        return {**asdict(self), "configs": [c.name for c in self.configs], "out": str(self.out)}


def run_config(plan, config, index, progress, users=None, load=None):
    """Run one configuration; return its raw record (recording, window, faults, audit, samples).

    Locust runs TAIL seconds past the measured window, and only requests
    that started inside the window count: the harness's own start and stop
    stay outside what is measured.
    """
    users = users or plan.users
    state_dir = plan.out / "cluster"
    recording = plan.out / "raw" / config.name
    schedule = fault_schedule(plan.faults, plan.duration, plan.instances, config, plan.runtime)
    progress(index, config, "starting the cluster")
    if plan.runtime == "swarm":  # the instances share no file: the database is PostgreSQL (deploy/stack.py)
        config = replace(config, db="postgres")
    cluster = up(config, instances=plan.instances, port=plan.port, state_dir=state_dir, runtime=plan.runtime)
    try:
        started = time.time()
        # A whole second, so the window is whole seconds of the recorder's clock.
        window_start = math.ceil(started + plan.warmup)
        run_time = window_start + plan.duration + TAIL - started
        locust = start_locust(users=users, run_time=run_time, ramp=plan.warmup / 2, url=cluster.url,
                              state_dir=state_dir, recording=recording,
                              env=session_env(window_start, schedule) if plan.writes_sessions else {})
        recorded = history.History(recording.with_name(f"{recording.name}.{history.FILE}"), experiment="run",
                                   command=f"{config.name}, fault schedule {plan.faults}")
        with Sampler(state_dir, locust.pid) as sampler, recorded:
            origin = recorded.now() + window_start - time.time()  # the window's start on the history's clock

            def waiting(step):
                alive(locust)
                progress(index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}, {users} "
                                        f"users; next: {step.action} {step.target or ''} at {step.at:.0f} s")
            try:
                events = Nemesis(recorded, state_dir=state_dir).run(schedule, started=origin, waiting=waiting)
                faults = [{"at": round(e["sent"] - origin, 2), "action": e["action"],
                           "target": e["target"] or step.fields.get("count", ""),
                           "took": None if e["effect"] is None else round(e["effect"] - e["sent"], 2)}
                          for step, e in zip(schedule, events)]
                wait_until(window_start + plan.duration, lambda: progress(
                    index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}, {users} users"), locust)
            except BaseException:
                stop_locust(locust)
                raise
        wait_locust(locust, TAIL + STOP_TIMEOUT + 60)
        raw = read_recording(recording, locust.recordings)
        progress(index, config, "auditing the messages")
        audit = audit_messages(cluster.url, raw["acknowledged"], raw["pollers"], state_dir=state_dir)
        sessions = read_back(cluster.url, raw["sessions"]) if plan.writes_sessions else None
    finally:
        deploy.down(state_dir)
    return {
        "config": asdict(config),
        "window_start": window_start,
        "duration": plan.duration,
        "warmup": plan.warmup,
        "faults": faults,
        "audit": audit,
        "sessions": sessions,
        "recording": raw,
        "samples": sampler.samples,
        "load": {"users": users, "processes": processes_for(users), **(load or {})},
    }


RECORDS = "records"  # out/records/<config>.json: what a run read live, beside raw/'s Locust recordings


def save_record(out, raw):
    """Keep what `summarise` reads of a configuration's run but cannot read again: everything but the Locust
    recording, which raw/<config>.<pid>.json keep already."""
    folder = Path(out) / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    kept = {key: value for key, value in raw.items() if key != "recording"}
    (folder / f"{raw['config']['name']}.json").write_text(json.dumps(kept))


def load_record(out, name):
    """The configuration's raw record again, as run_config returned it: its saved record and its recordings."""
    out = Path(out)
    path = out / RECORDS / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"{path}: no record of {name} (runs before records were kept cannot be rechecked)")
    try:
        recording = read_recording(out / "raw" / name, timeout=0)
    except RuntimeError as exc:  # no recording: Locust's own files are gone
        raise ValueError(f"{out / 'raw'}: {exc}") from None
    return {**json.loads(path.read_text()), "recording": recording}


# Logins in the seconds around a store fault: the writes most likely to be
# acknowledged by a primary that dies before its replicas have them.
BURST_BEFORE, BURST_AFTER = 3, 2


def session_env(window_start, schedule):
    """The journeys' switches for counting session writes: a session write each tick, and when to burst logins
    (around the first fault)."""
    first = window_start + schedule[0].at
    return {"LOADTEST_SESSION_WRITES": "1",
            "LOADTEST_LOGIN_BURST": f"{first - BURST_BEFORE:.3f},{first + BURST_AFTER:.3f}"}
