"""A headless Locust run of the chat users (locustfiles/journeys.py): start it, wait for it, read its recording.

Every experiment that drives Locust (the kill experiment, the capacity
step, sticky sessions' costs) starts it here, so its processes, its master
port, its stop and the merge of its recordings are decided once.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from deploy import cluster as deploy
from loadtest.harness import accounts
from loadtest.harness.analysis import merge

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILES = ROOT / "loadtest" / "locustfiles"  # what `locust -f` loads
# Locust runs this long past the measured window, so stopping its users
# (each gets STOP_TIMEOUT seconds to finish its task) happens after it.
TAIL = 5
STOP_TIMEOUT = 3
# Users per Locust process (each user makes about 1.5 requests a second): a
# choice, not a measurement; every run reports its generator's CPU and says
# when a process was saturated.
USERS_PER_PROCESS = 250


def processes_for(users):
    """Locust processes for this many users: one per USERS_PER_PROCESS, at most one per core."""
    return max(1, min(os.cpu_count() or 1, math.ceil(users / USERS_PER_PROCESS)))


def start_locust(*, users, run_time, ramp, url, state_dir, recording, shape=None, processes=None, env=None):
    """Start Locust headless on the cluster in state_dir, its users made beforehand there (harness/accounts.py).

    Each of its processes writes `<recording>.<pid>.json` at exit.
    """
    for stale in recording.parent.glob(f"{recording.name}.*.json"):
        stale.unlink()
    recording.parent.mkdir(parents=True, exist_ok=True)
    processes = processes or processes_for(users)
    env = {**os.environ, **(env or {})}
    stay = float(env["LOADTEST_STAY"].split(",")[0]) if env.get("LOADTEST_STAY") else None
    env["LOADTEST_ACCOUNTS"] = accounts.for_locust(users=users, processes=processes, run_time=run_time, stay=stay,
                                                    state_dir=state_dir)
    files = str(LOCUSTFILES / "journeys.py") + (f",{LOCUSTFILES / shape}" if shape else "")
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


def wait_until(moment, report, locust):
    """Sleep until a moment of the schedule, reporting progress, unless Locust died."""
    while (left := moment - time.time()) > 0:
        alive(locust)
        report()
        time.sleep(min(left, 1.0))


def alive(locust):
    """RuntimeError if Locust exited before its time."""
    if locust.poll() is not None:
        raise RuntimeError(f"Locust exited early with code {locust.returncode}")
