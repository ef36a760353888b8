"""The kill experiment: for each configuration, a cluster, a load, a fault schedule, an audit.

The runner talks to the cluster through deploy's public functions and to
the site over HTTP, like any other client.
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy import cluster as deploy
from labcore import registry
from loadtest._audit import audit_messages

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MATRIX = ["memory+roundrobin", "memory+sticky", "redis", "db", "cached_db", "memcached",
                  "signed_cookies"]
QUICK_MATRIX = ["memory+sticky", "redis", "cached_db"]
# Cheap password hashing inside the experiment: a storm of logins after a
# kill should measure the session store, not PBKDF2 (accounts/hashers.py).
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}


@dataclass(frozen=True)
class Config:
    name: str
    sessions: str
    lb: str
    presence: str


def parse_config(text):
    """`memory+sticky` -> memory sessions behind sticky; `redis` -> round robin.

    Presence is the one the registry pairs with the session store.
    """
    sessions, _, lb = text.partition("+")
    lb = lb or "roundrobin"
    if lb not in deploy.LB_CHOICES:
        raise ValueError(f"{text!r}: the load balancing after '+' is one of {', '.join(deploy.LB_CHOICES)}")
    if sessions not in registry.SESSION_STORES:
        raise ValueError(f"{text!r}: the session store is one of {', '.join(registry.SESSION_STORES)}")
    return Config(text, sessions, lb, registry.SESSION_STORES[sessions].presence)


def fault_schedule(kind, duration, instances):
    """Return [(seconds into the measured window, action, argument)]."""
    third = duration / 3
    schedules = {
        "kill": [(third, "kill", "app1"), (2 * third, "start", "app1")],
        "term": [(third, "term", "app1"), (2 * third, "start", "app1")],
        "scale": [(third, "scale", instances - 1), (2 * third, "scale", instances)],
        "kills": [(duration / 4, "kill", "app1"), (duration / 2, "kill", "app2"),
                  (3 * duration / 4, "start", "app1"), (3 * duration / 4, "start", "app2")],
    }
    if kind not in schedules:
        raise ValueError(f"fault schedule {kind!r} is not one of {', '.join(schedules)}")
    if kind in ("scale", "kills") and instances < 2:
        raise ValueError(f"the {kind!r} schedule needs at least 2 instances")
    return schedules[kind]


def apply_fault(action, argument, state_dir):
    if action == "kill":
        deploy.kill(argument, state_dir=state_dir)
    elif action == "term":
        deploy.kill(argument, graceful=True, state_dir=state_dir)
    elif action == "start":
        deploy.start(argument, state_dir=state_dir)
    elif action == "scale":
        deploy.scale(argument, state_dir=state_dir)


def machine():
    return f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


@dataclass
class Plan:
    """What a run does, built once from the arguments and saved as it is with the results."""

    configs: list
    users: int
    duration: float
    warmup: float
    faults: str
    instances: int
    port: int
    out: Path
    machine: str = field(default_factory=machine)

    def seconds_per_config(self):
        return self.warmup + self.duration + 20  # cluster up, audit and down

    def as_json(self):
        return {**asdict(self), "configs": [c.name for c in self.configs], "out": str(self.out)}


def run_config(plan, config, index, progress):
    """Run one configuration; return its raw record (recording, window, faults, audit)."""
    state_dir = plan.out / "cluster"
    recording = plan.out / "raw" / f"{config.name}.json"
    recording.parent.mkdir(parents=True, exist_ok=True)
    recording.unlink(missing_ok=True)
    progress(index, config, "starting the cluster")
    cluster = deploy.up(
        instances=plan.instances, sessions=config.sessions, presence=config.presence, lb=config.lb,
        port=plan.port, env=SITE_ENV, state_dir=state_dir,
    )
    try:
        started = time.time()
        locust = _start_locust(plan, cluster.url, recording, plan.out / "raw" / f"{config.name}.locust.log")
        window_start = started + plan.warmup
        faults = []
        try:
            for offset, action, argument in fault_schedule(plan.faults, plan.duration, plan.instances):
                _wait_until(window_start + offset, lambda: progress(
                    index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}; "
                                   f"next: {action} {argument} at {offset:.0f} s"), locust)
                at = time.time()
                apply_fault(action, argument, state_dir)
                faults.append({"at": round(at - window_start, 2), "action": action, "target": argument})
            _wait_until(window_start + plan.duration, lambda: progress(
                index, config, f"{time.time() - window_start:5.0f} s of {plan.duration:g}"), locust)
            locust.wait(timeout=60)
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait(timeout=30)
        if not recording.exists():
            raise RuntimeError(f"Locust left no recording; see {recording.with_suffix('.locust.log')}")
        raw = json.loads(recording.read_text())
        progress(index, config, "auditing the messages")
        audit = audit_messages(cluster.url, raw["acknowledged"], raw["pollers"])
    finally:
        deploy.down(state_dir)
    return {
        "config": asdict(config),
        "window_start": window_start,
        "duration": plan.duration,
        "warmup": plan.warmup,
        "faults": faults,
        "audit": audit,
        "recording": raw,
    }


def _start_locust(plan, url, recording, log_path):
    spawn_rate = max(1, plan.users / max(1, plan.warmup / 2))
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest"), "--headless",
        "--users", str(plan.users), "--spawn-rate", f"{spawn_rate:g}",
        "--run-time", f"{plan.warmup + plan.duration:.0f}s", "--stop-timeout", "3",
        "--host", url, "--only-summary", "--loglevel", "WARNING",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "LOADTEST_OUTPUT": str(recording)})


def _wait_until(moment, report, locust):
    """Sleep until a moment of the schedule, reporting progress, unless Locust died."""
    while (left := moment - time.time()) > 0:
        if locust.poll() is not None:
            raise RuntimeError(f"Locust exited early with code {locust.returncode}")
        report()
        time.sleep(min(left, 1.0))
