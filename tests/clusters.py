"""Real clusters for the tests, started and stopped with the `python -m deploy` command."""

import json
import subprocess
import sys
from pathlib import Path

from deploy import cluster as deploy_cluster

ROOT = Path(__file__).resolve().parent.parent


def deploy(state_dir, *args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "--state-dir", str(state_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    if check and done.returncode:
        raise AssertionError(f"deploy {' '.join(args)} failed: {done.stderr}")
    return done


def up(state_dir, *args):
    """`deploy up` on a free block of ports; return the Cluster.

    Another process may take a port between the check and the start: then
    try another block.
    """
    for _ in range(3):
        done = deploy(state_dir, "up", "--port", str(deploy_cluster.free_base_port()), *args, check=False)
        if "is busy" not in done.stderr:
            break
    assert done.returncode == 0, f"deploy up failed: {done.stderr}"
    return Cluster(state_dir)


def recorded_pids(state_dir):
    recorded = deploy_cluster.load(state_dir)
    return recorded.pids() if recorded else []


def recorded_data(state_dir):
    """The data folders of the store nodes recorded in state_dir (PostgreSQL's may be under /var/tmp)."""
    recorded = deploy_cluster.load(state_dir)
    return [record["data"] for record in recorded.stores.values() if "data" in record] if recorded else []


class Cluster:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.url = self.status()["url"]
        self._reader = None

    def reader(self):
        """Request headers of a user of the test's own, made on first use: /api/lease needs a login.

        A bearer token from deploy (no sign-up, so no slot of this address's
        sign-up limit), which needs no session store: an instance whose
        Redis is paused or cut off still answers it.
        """
        if self._reader is None:
            token = deploy_cluster.api_token("lab reader", state_dir=self.state_dir)
            self._reader = {"Authorization": f"Bearer {token}"}
        return self._reader

    def status(self):
        return json.loads(deploy(self.state_dir, "status", "--json").stdout)

    def run(self, *args):
        return deploy(self.state_dir, *args)

    def instance(self, name):
        return next(i for i in self.status()["instances"] if i["name"] == name)

    def roles(self):
        """{store node: its role now}, as status reports it."""
        return {row["name"]: row["role"] for row in self.status()["stores"]}
