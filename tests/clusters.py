"""Real clusters for the tests, started and stopped with the `python -m deploy` command."""

import json
import subprocess
import sys
from pathlib import Path

from deploy import layout

ROOT = Path(__file__).resolve().parent.parent


def deploy(state_dir, *args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "--state-dir", str(state_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    if check and done.returncode:
        raise AssertionError(f"deploy {' '.join(args)} failed: {done.stderr}")
    return done


def recorded_pids(state_dir):
    recorded = layout.load(state_dir)
    return recorded.pids() if recorded else []


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
