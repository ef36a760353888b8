"""The kill experiment: for each configuration, a cluster, a load, a fault schedule, an audit.

The runner talks to the cluster through deploy's public functions and to
the site over HTTP, like any other client. The store faults (store-kill,
store-pause, replica-kill, store-restart) aim at the configuration's store
instead of an instance, and turn on what only they need: a session write
on every tick, a burst of logins around the fault, and reading every
user's session back after the run (loadtest/_sessions.py).
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy import cluster as deploy
from labcore import registry
from loadtest import _accounts
from loadtest._analysis import merge
from loadtest._audit import audit_messages
from loadtest._page import machine
from loadtest._sampler import Sampler
from loadtest._sessions import read_back
from loadtest.harness import history
from loadtest.harness.nemesis import BROKEN, Nemesis, Step, check, rolling_restart

ROOT = Path(__file__).resolve().parent.parent


def matrix(which):
    """The configurations the registry's rows ask for: which is "default" or "quick".

    A store run behind round robin alone is named by itself (`redis`), one
    run behind several load balancings or behind another one by both
    (`memory+roundrobin`, `memory+sticky`), as parse_config reads them.
    """
    names = []
    for row in registry.SESSION_STORES.values():
        lbs = row.experiment if which == "default" else (row.quick_experiment,) if row.quick_experiment else ()
        names += [row.name if lbs == ("roundrobin",) else f"{row.name}+{lb}" for lb in lbs]
    return names


DEFAULT_MATRIX = matrix("default")
QUICK_MATRIX = matrix("quick")
# The store faults' default: the single Redis as the baseline, then the replicated topologies.
STORE_MATRIX = ["redis", "redis@sentinel", "redis@sentinel-sync1", "cached_db@sentinel", "db@pg", "db@pg-any1",
                "signed_cookies@sentinel"]
# Cheap password hashing inside the experiment: a storm of logins after a
# kill should measure the session store, not PBKDF2 (accounts/hashers.py).
# Every limit stays as the site ships it: the users exist beforehand
# (loadtest/_accounts.py), so none fails a login for want of an account, and
# the audit reads with a token of its own (loadtest/_audit.py).
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}
# Locust runs this long past the measured window, so stopping its users
# (each gets STOP_TIMEOUT seconds to finish its task) happens after it.
TAIL = 5
STOP_TIMEOUT = 3
# Users per Locust process (each user makes about 1.5 requests a second): a
# choice, not a measurement; every run reports its generator's CPU and says
# when a process was saturated.
USERS_PER_PROCESS = 250


@dataclass(frozen=True)
class Config:
    name: str
    sessions: str
    lb: str
    presence: str
    db: str = "sqlite"
    topology: deploy.Topology = field(default_factory=deploy.Topology)


# What may follow '@' in a configuration's name: the store topology.
TOPOLOGY_FORMS = {
    "sentinel": "Redis under Sentinel: a primary, 2 replicas, 3 Sentinels; asynchronous",
    "sentinel-sync<k>": "the same, k replicas confirming each session write (--redis-sync k)",
    "pg": "PostgreSQL, a primary and 2 standbys; asynchronous",
    "pg-any<k>, pg-first<k>": "the same, ANY k or FIRST k standbys confirming each commit (--pg-sync)",
}
PG_STANDBYS = 2
REDIS_REPLICAS = 2


def parse_config(text):
    """`memory+sticky` -> memory sessions behind sticky; `redis` -> round robin;
    `redis@sentinel-sync1` -> Redis under Sentinel, one replica confirming each session write.

    SESSIONS[+roundrobin|sticky][@TOPOLOGY]. Presence is the one the registry
    pairs with the session store.
    """
    head, _, topology_name = text.partition("@")
    sessions, _, lb = head.partition("+")
    lb = lb or "roundrobin"
    if lb not in deploy.LB_CHOICES:
        raise ValueError(f"{text!r}: the load balancing after '+' is one of {', '.join(deploy.LB_CHOICES)}")
    if sessions not in registry.SESSION_STORES:
        raise ValueError(f"{text!r}: the session store is one of {', '.join(registry.SESSION_STORES)}")
    db, topology = _topology(text, topology_name)
    return Config(text, sessions, lb, registry.SESSION_STORES[sessions].presence, db, topology)


def _topology(text, name):
    """(database, deploy.Topology) for what follows '@' ("" for every store alone)."""
    if not name:
        return "sqlite", deploy.Topology()
    if re.fullmatch("sentinel", name):
        return "sqlite", deploy.Topology(redis="sentinel", redis_replicas=REDIS_REPLICAS)
    if match := re.fullmatch(r"sentinel-sync(\d+)", name):
        topology = deploy.Topology(redis="sentinel", redis_replicas=REDIS_REPLICAS, redis_sync=int(match[1]))
        return "sqlite", _checked(text, topology)
    if name == "pg":
        return "postgres", deploy.Topology(pg_standbys=PG_STANDBYS)
    if match := re.fullmatch(r"pg-(any|first)(\d+)", name):
        topology = deploy.Topology(pg_standbys=PG_STANDBYS, pg_sync=f"{match[1].upper()} {match[2]}")
        return "postgres", _checked(text, topology)
    forms = "; ".join(f"{form} ({meaning})" for form, meaning in TOPOLOGY_FORMS.items())
    raise ValueError(f"{text!r}: the topology after '@' is one of: {forms}")


def _checked(text, topology):
    try:
        return topology.check()
    except deploy.DeployError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def up(config, *, instances, port, state_dir, **options):
    """Start a cluster of this configuration (deploy up), with the experiment's site settings.

    options: more of deploy.up's (CPU limits, durability), or a topology in place of the configuration's.
    """
    return deploy.up(**{"instances": instances, "sessions": config.sessions, "presence": config.presence,
                        "lb": config.lb, "db": config.db, "topology": config.topology, "port": port,
                        "env": SITE_ENV, "state_dir": state_dir, **options})


INSTANCE_FAULTS = ("kill", "term", "scale", "kills", "rolling-restart")
STORE_FAULTS = ("store-kill", "store-pause", "replica-kill", "store-restart")
# A paused primary stays frozen this long: longer than Sentinel takes to notice
# it and promote a replica, so that it wakes up demoted.
PAUSE_SECONDS = 2 * deploy.SENTINEL_FAILOVER_SECONDS


def fault_schedule(kind, duration, instances, config=None):
    """Return the nemesis's schedule (loadtest/harness/nemesis.py): Steps at seconds into the measured window.

    The store faults aim at the configuration's store (see store_of):
    `redis:primary` / `pg:primary` name whichever node is primary when the
    fault lands, and BROKEN the node it hit. The rolling restart stops and
    starts each instance in turn over the middle third.
    """
    third = duration / 3
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


def store_of(config):
    """The store a store fault breaks: PostgreSQL if the configuration has it, else Redis."""
    if config.db == "postgres":
        return "pg"
    needed = deploy.servers_for(sessions=config.sessions, presence=config.presence, db=config.db)
    if "redis" not in needed:
        raise ValueError(f"{config.name}: neither Redis nor PostgreSQL in it, so no store fault can aim at it")
    return "redis"


def _store_schedule(kind, third, config):
    if config is None:
        return []  # checked per configuration when the run starts
    store = store_of(config)
    primary = f"{store}:primary"
    replicas = config.topology.pg_standbys if store == "pg" else (
        config.topology.redis_replicas if config.topology.redis == "sentinel" else 0)
    if kind == "store-kill":
        # Nothing promotes PostgreSQL on its own here: the experiment does it at
        # once, as an operator or a failover manager (Patroni) would.
        promote = [Step(third, "promote")] if store == "pg" and replicas else []
        return [Step(third, "kill", primary), *promote, Step(2 * third, "start", BROKEN)]
    if kind == "store-pause":
        return [Step(third, "pause", primary), Step(third + PAUSE_SECONDS, "resume", BROKEN)]
    if kind == "replica-kill":
        if not replicas:
            raise ValueError(f"{config.name}: replica-kill needs replicas (a topology such as @sentinel-sync1 "
                             "or @pg-any1)")
        return [Step(third, "kill", f"{store}2"), Step(2 * third, "start", BROKEN)]
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
    schedule = fault_schedule(plan.faults, plan.duration, plan.instances, config)
    progress(index, config, "starting the cluster")
    cluster = up(config, instances=plan.instances, port=plan.port, state_dir=state_dir)
    try:
        started = time.time()
        # A whole second, so the window is whole seconds of the recorder's clock.
        window_start = math.ceil(started + plan.warmup)
        run_time = window_start + plan.duration + TAIL - started
        locust = start_locust(users=users, run_time=run_time, ramp=plan.warmup / 2, url=cluster.url,
                              state_dir=state_dir, recording=recording,
                              env=store_fault_env(plan.faults, window_start, schedule))
        recorded = history.History(recording.with_name(f"{recording.name}.{history.FILE}"), experiment="run",
                                   command=f"{config.name}, fault schedule {plan.faults}")
        with Sampler(state_dir, locust.pid) as sampler, recorded:
            origin = recorded.now() + window_start - time.time()  # the window's start on the history's clock

            def waiting(step):
                _alive(locust)
                progress(index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}, {users} "
                                        f"users; next: {step.action} {step.target or ''} at {step.at:.0f} s")
            try:
                events = Nemesis(recorded, state_dir=state_dir).run(schedule, started=origin, waiting=waiting)
                faults = [{"at": round(e["sent"] - origin, 2), "action": e["action"],
                           "target": e["target"] or step.fields.get("count", ""),
                           "took": None if e["effect"] is None else round(e["effect"] - e["sent"], 2)}
                          for step, e in zip(schedule, events)]
                _wait_until(window_start + plan.duration, lambda: progress(
                    index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}, {users} users"), locust)
            except BaseException:
                stop_locust(locust)
                raise
        wait_locust(locust, TAIL + STOP_TIMEOUT + 60)
        raw = read_recording(recording, locust.recordings)
        progress(index, config, "auditing the messages")
        audit = audit_messages(cluster.url, raw["acknowledged"], raw["pollers"], state_dir=state_dir)
        sessions = read_back(cluster.url, raw["sessions"]) if plan.faults in STORE_FAULTS else None
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


# Logins in the seconds around a store fault: the writes most likely to be
# acknowledged by a primary that dies before its replicas have them.
BURST_BEFORE, BURST_AFTER = 3, 2


def store_fault_env(faults, window_start, schedule):
    """The journeys' switches for a store fault: a session write each tick, and when to burst logins."""
    if faults not in STORE_FAULTS:
        return {}
    first = window_start + schedule[0].at
    return {"LOADTEST_SESSION_WRITES": "1",
            "LOADTEST_LOGIN_BURST": f"{first - BURST_BEFORE:.3f},{first + BURST_AFTER:.3f}"}


def processes_for(users):
    """Locust processes for this many users: one per USERS_PER_PROCESS, at most one per core."""
    return max(1, min(os.cpu_count() or 1, math.ceil(users / USERS_PER_PROCESS)))


def start_locust(*, users, run_time, ramp, url, state_dir, recording, shape=None, processes=None, env=None):
    """Start Locust headless on the cluster in state_dir, its users made beforehand there (loadtest/_accounts.py).

    Each of its processes writes `<recording>.<pid>.json` at exit.
    """
    for stale in recording.parent.glob(f"{recording.name}.*.json"):
        stale.unlink()
    recording.parent.mkdir(parents=True, exist_ok=True)
    processes = processes or processes_for(users)
    env = {**os.environ, **(env or {})}
    stay = float(env["LOADTEST_STAY"].split(",")[0]) if env.get("LOADTEST_STAY") else None
    env["LOADTEST_ACCOUNTS"] = _accounts.for_locust(users=users, processes=processes, run_time=run_time, stay=stay,
                                                    state_dir=state_dir)
    files = str(ROOT / "loadtest" / "journeys.py") + (f",{ROOT / 'loadtest' / shape}" if shape else "")
    argv = [
        sys.executable, "-m", "locust", "-f", files, "--headless",
        "--users", str(users), "--spawn-rate", f"{max(1, users / max(1, ramp)):g}",
        "--run-time", f"{math.ceil(run_time)}s", "--stop-timeout", str(STOP_TIMEOUT),
        "--host", url, "--only-summary", "--loglevel", "WARNING",
        *(_processes_options(processes) if processes > 1 else []),
    ]
    env["LOADTEST_OUTPUT"] = str(recording)
    with open(recording.with_name(f"{recording.name}.locust.log"), "wb") as log:
        locust = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    # Each process writes its recording as it quits; with workers, the master as well.
    locust.recordings = processes + 1 if processes > 1 else 1
    return locust


def _processes_options(processes):
    """Locust in several processes, its master on a port of its own.

    Locust's master listens on 5557 on every address by default, and its
    workers connect to 127.0.0.1:5557: two runs on one machine would share
    a master, or one would fail to start. Seen here: steps with no requests
    at all while another run's workers used the master.
    """
    port = str(deploy.free_port())
    return ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "--master-port", port]


def wait_locust(locust, timeout):
    try:
        locust.wait(timeout=timeout)
    finally:
        stop_locust(locust)


def stop_locust(locust):
    if locust.poll() is None:
        locust.terminate()
        locust.wait(timeout=30)


def read_recording(recording, expected=1, timeout=30):
    """Every Locust process's recording, merged into one.

    expected: how many files the run writes (start_locust's `recordings`).
    Workers may write theirs after the master has exited: wait for them, or
    a run would be read without its requests.
    """
    deadline = time.monotonic() + timeout
    while len(files := sorted(recording.parent.glob(f"{recording.name}.*.json"))) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Locust left {len(files)} of its {expected} recordings; see "
                               f"{recording.name}.locust.log in {recording.parent}")
        time.sleep(0.2)
    if not files:
        raise RuntimeError(f"Locust left no recording; see {recording.name}.locust.log in {recording.parent}")
    return merge(json.loads(f.read_text()) for f in files)


def _wait_until(moment, report, locust):
    """Sleep until a moment of the schedule, reporting progress, unless Locust died."""
    while (left := moment - time.time()) > 0:
        _alive(locust)
        report()
        time.sleep(min(left, 1.0))


def _alive(locust):
    if locust.poll() is not None:
        raise RuntimeError(f"Locust exited early with code {locust.returncode}")
