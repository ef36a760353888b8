"""A real control room for the tests: `python -m control` in a process of its own, and a client of its JSON API."""

import json
import subprocess
import sys
import time

import requests

from deploy import cluster as deploy_cluster
from tests.clusters import ROOT, deploy, recorded_pids

# Seconds: generous deadlines for bounded polls on a busy machine.
START = 30
SOON = 20


class ControlRoom:
    """`python -m control` on a free port, watching state_dir; stop() brings down any cluster it started."""

    def __init__(self, state_dir, runs):
        self.state_dir, self.runs = state_dir, runs
        self.port = deploy_cluster.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        runs.mkdir(parents=True, exist_ok=True)
        self.log = runs / "control.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "control", "--port", str(self.port), "--state-dir", str(state_dir),
                 "--runs", str(runs)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.http = requests.Session()
        self.wait_until(lambda: self._answers(), seconds=START, what="the control room to answer")
        self.http.get(f"{self.url}/", timeout=5)  # sets the csrftoken cookie

    def _answers(self):
        try:
            return self.http.get(f"{self.url}/api/state", timeout=2).status_code == 200
        except requests.ConnectionError:
            assert self.process.poll() is None, f"the control room exited: {self.log.read_text()}"
            return False

    def state(self):
        answer = self.http.get(f"{self.url}/api/state", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def act(self, **body):
        """POST /api/actions as the page does; the answer."""
        return self.http.post(f"{self.url}/api/actions", data=json.dumps(body), timeout=60,
                              headers={"X-CSRFToken": self.http.cookies.get("csrftoken", ""),
                                       "Content-Type": "application/json"})

    def settled_load(self):
        """The load's figures once a stopped load has read every session back (the room is no longer busy)."""
        def settled():
            answer = self.act(action="load", users=0)
            return answer.status_code == 409 and "no load" in answer.json()["error"]
        self.wait_until(settled, seconds=60, what="the stopped load's final figures")
        return self.state()["load"]

    def node(self, name):
        return next((n for n in self.state()["nodes"] if n["name"] == name), None)

    def wait_until(self, condition, *, seconds=SOON, what="the condition"):
        """The first truthy value of condition() within `seconds`; AssertionError naming `what` if none came."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"waited {seconds} s for {what}")

    def wait_serving(self, instances):
        """Wait until HAProxy and `instances` instances are up, as the room observes them."""
        def serving():
            nodes = {n["name"]: n["state"] for n in self.state()["nodes"]}
            return nodes.get("haproxy") == "up" and all(nodes.get(f"app{n}") == "up"
                                                         for n in range(1, instances + 1))
        self.wait_until(serving, seconds=120, what=f"HAProxy and {instances} instances up")

    def stop(self):
        """Stop the room, then any cluster in its state folder; return the pids still alive (none, normally)."""
        pids = recorded_pids(self.state_dir)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        deploy(self.state_dir, "down", check=False)
        return [pid for pid in pids if deploy_cluster.alive(pid)]
