"""Real clusters for the tests, started and stopped with the `python -m deploy` command."""

import json
import random
import subprocess
import sys
from pathlib import Path

from deploy.processes import port_free

ROOT = Path(__file__).resolve().parent.parent


def deploy(state_dir, *args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "--state-dir", str(state_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    if check and done.returncode:
        raise AssertionError(f"deploy {' '.join(args)} failed: {done.stderr}")
    return done


def free_base_port():
    """A base port whose block of 30 ports is free: LB, stats, stores, instances.

    The search starts at a random block, so that test runs side by side on one
    machine do not all try the same one.
    """
    start = random.randrange(20000, 50000)
    for base in range(start, start + 10000, 97):
        if all(port_free(base + offset) for offset in range(30)):
            return base
    raise RuntimeError("no free block of 30 ports")


def recorded_pids(state_dir):
    path = state_dir / "cluster.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [data["haproxy_pid"]] + [p["pid"] for p in (*data["instances"].values(), *data["stores"].values())]


class Cluster:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.url = self.status()["url"]

    def status(self):
        return json.loads(deploy(self.state_dir, "status", "--json").stdout)

    def run(self, *args):
        return deploy(self.state_dir, *args)

    def instance(self, name):
        return next(i for i in self.status()["instances"] if i["name"] == name)
