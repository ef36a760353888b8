"""Harness experiments started from the page: `python -m loadtest NAME` in a process of its own, followed live.

An experiment deploys its own clusters, in its own state folders, so it
runs beside whatever cluster the page shows. Its arguments come from its
own argument definitions (loadtest's parser); its output folder is a new
folder of the control room's runs, where its history.jsonl is followed as
it grows (GET /api/events streams it while it runs), and its report.html
and run.json (with the verdict) appear when it ends.
"""

import argparse
import itertools
import json
import re
import signal
import subprocess
import sys
from datetime import datetime, timezone

from deploy import cluster as deploy
from loadtest.__main__ import build_parser
from loadtest.harness.history import FILE

# The experiments built on the harness: a history, checkers and a verdict (docs/design/harness.md).
HARNESS = ("split-brain", "fate")
RUN_ID = re.compile(r"^\d{8}-\d{6}-[a-z-]+(-\d+)?$")  # -2, -3, ... for a second start in one second
STOP_SECONDS = 120  # an experiment interrupted takes its clusters down first


def parser_of(name):
    """The argument parser of one experiment of `python -m loadtest`."""
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices[name]


def argv_for(name, args):
    """The experiment's command-line arguments for a mapping of its options; ValueError naming what is wrong."""
    if name not in HARNESS:
        raise ValueError(f"no experiment {name!r}; the experiments are: {', '.join(HARNESS)}")
    if not isinstance(args, dict):
        raise ValueError("'args' must be a JSON object of the experiment's options")
    if "out" in args:
        raise ValueError("'out' is chosen by the control room: a new folder of its runs")
    try:
        return deploy.as_argv(parser_of(name), args)
    except deploy.DeployError as exc:
        raise ValueError(str(exc)) from None


class Experiment:
    """One experiment running (or finished) in runs_dir/<id>/."""

    def __init__(self, name, argv, runs_dir):
        started = datetime.now(timezone.utc)
        self.name, self.started = name, started.isoformat(timespec="seconds")
        self.id, self.folder = _new_folder(runs_dir, f"{started:%Y%m%d-%H%M%S}-{name}")
        self._lines, self._offset, self._partial = [], 0, ""
        with (self.folder / "output.log").open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "loadtest", name, *argv, "--out", str(self.folder)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def running(self):
        return self.process.poll() is None

    def info(self):
        """The interface's "run": its id, experiment, start, and its verdict once it ended ({"held", "checks"})."""
        verdict = None
        if not self.running() and (self.folder / "run.json").exists():
            verdict = json.loads((self.folder / "run.json").read_text()).get("verdict")
        return {"id": self.id, "experiment": self.name, "started": self.started, "verdict": verdict}

    def lines_from(self, n):
        """(the history's lines from the n-th on, the number of the line after them), as far as it is written."""
        path = self.folder / FILE
        if path.exists():
            with path.open() as history:
                history.seek(self._offset)
                text = self._partial + history.read()
                self._offset = history.tell()
            *complete, self._partial = text.split("\n")
            self._lines += complete
        return self._lines[n:], len(self._lines)

    def stop(self):
        """Interrupt it as Ctrl-C would, so that it takes its clusters down; wait for it."""
        if self.running():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _new_folder(runs_dir, base):
    """(id, folder) of a folder made new for this run: `base`, else `base-2`, `base-3`, ... (two starts in a second)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        run_id = base if n == 1 else f"{base}-{n}"
        try:
            (runs_dir / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, runs_dir / run_id
