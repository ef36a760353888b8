"""The control room's one piece of state: the cluster in its state folder as observed, the run, the load.

Also the harness experiment the page started last, if any (control/experiments.py).

A watcher thread observes the cluster through deploy.cluster.status every
OBSERVE_EVERY seconds, so what the page shows comes from the processes and
the servers themselves, never from what the page sent: a node killed from
a terminal shows as down at the next observation. A cluster found in the
state folder is attached to (a run is opened for it); one gone is let go.

Every request of the page is recorded in the run's history: faults as
"fault" events (when sent, when the watcher saw them take effect, when they
ended), the rest (up, down, load) as samples with an id (control/live.py).
Actions that take long (up, down, starting or resizing the load) run in a
thread of their own, one at a time; faults run at once.
"""

import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from control import actions, report
from control.live import LiveHistory
from deploy import cluster as deploy

OBSERVE_EVERY = 0.5  # seconds between two observations of the cluster
# /api/state's "load": the issue's keys, then the pollers' and what no final read confirmed nor showed lost (known
# once the load stopped; None until then).
LOAD_FIGURES = ("rps", "p50_ms", "p99_ms", "failed", "sessions_lost", "writes_acked", "writes_lost",
                "presence_accuracy", "messages_missed", "messages_seen_twice", "sessions_unconfirmed",
                "writes_unconfirmed")
ROLES = {"primary": "primary", "replica": "replica", "standby": "replica", "sentinel": "sentinel",
         "leader": "leader", "follower": "follower"}  # as the interface names them; others: None


class Room:
    def __init__(self, *, state_dir, runs_dir):
        self.state_dir, self.runs_dir = Path(state_dir), Path(runs_dir)
        self.lock = threading.RLock()
        self.busy = None  # the long action under way (up, down, load), or None
        self.run = None  # the LiveHistory of the open run
        self.run_info = None
        self.load = None
        self.experiment = None  # the harness experiment started from the page last (control/experiments.py)
        self.cluster, self.nodes = None, []
        self.effects = []  # (fault event, target, the state that shows it took effect)
        self._states = {}
        self.closing = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="control room watcher", daemon=True)

    def start(self):
        self.observe()
        self.watcher.start()
        return self

    def close(self):
        """Stop watching; stop the load (its final reads recorded) and close the run. The cluster stays up."""
        self.closing.set()
        self.watcher.join(timeout=10)
        with self.lock:
            if self.load:
                self.load.stop()
            self.close_run()
            if self.experiment:
                self.experiment.stop()

    # What the page reads

    def state(self):
        with self.lock:
            figures, shares = self.run.figures() if self.run else ({}, {})
            load = {"running": self.load is not None, "users": self.load.users if self.load else 0,
                    **{key: figures.get(key) for key in LOAD_FIGURES}}
            if self.load is None and not (self.run and self.run.tally.final):
                load.update(rps=0.0, failed=0, sessions_lost=0, writes_acked=0, writes_lost=0)
            nodes = [{**node, "share": shares.get(node["name"], 0.0) if node["kind"] == "instance" else None}
                     for node in self.nodes]
            return {"cluster": self.cluster, "nodes": nodes, "load": load, "run": self._run()}

    def _run(self):
        """The experiment while it runs, or once it ended with no cluster run open; else the cluster's run."""
        if self.experiment and (self.experiment.running() or self.run is None):
            return self.experiment.info()
        return self.run_info

    def source(self):
        """What GET /api/events follows: a running experiment's history, else the cluster's run's."""
        with self.lock:
            return self.experiment if self.experiment and self.experiment.running() else self.run

    # Observation

    def _watch(self):
        while not self.closing.wait(OBSERVE_EVERY):
            self.observe()

    def observe(self):
        """Read the cluster's status now; attach to a new cluster, let a vanished one go, settle faults."""
        try:
            status = deploy.status(state_dir=self.state_dir) if deploy.load(self.state_dir) else None
        except (deploy.DeployError, OSError, ValueError):
            status = None
        with self.lock:
            if status is None or not (status["haproxy"]["alive"] or any(row["alive"] for row in status["instances"])):
                if self.busy is None:
                    self.let_go()
                return
            self.cluster = _options(status)
            self.nodes = _nodes(status)
            if self.run is None:
                self.open_run("attach")
            self._settle({node["name"]: node["state"] for node in self.nodes})

    def _settle(self, states):
        """Mark faults that took effect or ended, as observed; record each change of a node's state."""
        changed = {name: state for name, state in states.items() if self._states.get(name) != state}
        self._states = states
        if changed and self.run:
            self.run.sample(nodes=changed)
        waiting = []
        for event, target, wanted in self.effects:
            if states.get(target) == wanted:
                actions.took_effect(self.run, event)
            else:
                waiting.append((event, target, wanted))
        self.effects = waiting
        for event in actions.open_faults(self.run) if self.run else ():
            if event["action"] != "partition" and event["effect"] is not None and states.get(event["target"]) == "up":
                self.run.ended(event)

    # Runs

    def open_run(self, why):
        started = datetime.now(timezone.utc)
        name = f"{started:%Y%m%d-%H%M%S}-control"
        self.run = LiveHistory(self.runs_dir / name / "history.jsonl", experiment="control",
                               command=f"python -m control ({why})")
        self.run_info = {"id": name, "experiment": "control", "started": started.isoformat(timespec="seconds"),
                         "verdict": None}

    def close_run(self):
        """Close the open run and write its page (control/report.py)."""
        if self.run:
            self.run.close()
            try:
                report.write(self.run.path.parent, self.run_info)
            except (OSError, ValueError) as exc:  # the history stays, and the watcher must go on
                print(f"control: the page of run {self.run_info['id']} was not written: {exc}", file=sys.stderr)
        self.run = self.run_info = None

    def let_go(self):
        """The cluster is gone (down here or from a terminal): stop the load, close the run, forget the nodes."""
        if self.load:
            self.load.stop()
            self.load = None
        self.close_run()
        self.cluster, self.nodes, self.effects, self._states = None, [], [], {}

    # Long actions, one at a time

    def in_background(self, name, work):
        """Run work() in a thread, marked busy with `name` until it returns; its failure goes into the run."""
        self.busy = name

        def run():
            try:
                work()
            except Exception as exc:  # any failure of an action is the page's to show
                with self.lock:
                    if self.run:
                        self.run.sample(action=name, error=str(exc))
            finally:
                with self.lock:
                    self.busy = None

        threading.Thread(target=run, name=f"control room {name}", daemon=True).start()


def _options(status):
    """The options the cluster runs with, as `up`'s keywords name them."""
    port = int(status["url"].rsplit(":", 1)[1])
    return {"url": status["url"], "instances": len(status["instances"]), "sessions": status["sessions"],
            "presence": status["presence"], "lb": status["lb"], "db": status["db"], "port": port,
            **status["topology"]}


def _nodes(status):
    haproxy = {"name": "haproxy", "kind": "haproxy", "role": None,
               "state": "up" if status["haproxy"]["alive"] else "down"}
    instances = [{"name": row["name"], "kind": "instance", "role": None, "state": row["state"]}
                 for row in status["instances"]]
    stores = [{"name": row["name"], "kind": row["kind"], "role": ROLES.get(row["role"]), "state": row["state"]}
              for row in status["stores"]]
    return [haproxy, *instances, *stores]

