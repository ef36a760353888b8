"""`python -m loadtest recheck FOLDER`: a finished run's figures, charts and verdict again, from its history alone."""

import json
import sys
from pathlib import Path

from loadtest.bench import (
    against_report,
    posts,
    presence,
    profile_report,
    replication_report,
    sessions,
    shards_report,
    sockets_report,
    stores,
    stores_report,
)
from loadtest.bench import sockets as bench_sockets
from loadtest.experiments import (
    capacity,
    etcd_loss,
    fate,
    kill,
    powerloss,
    quorum,
    scaling,
    scaling_report,
    sockets,
    split_brain,
    sticky,
)
from loadtest.harness import history, verdict
from loadtest.reports import page

NAME = "recheck"
HELP = "a finished run's figures, charts and verdict again, from its history.jsonl alone (split-brain, fate, " \
       "sockets, quorum, powerloss, etcd-loss, sticky, capacity, scaling, bench (bench-servers: each server's run) " \
       "and the other bench-* commands), or the kill experiment's from its records; rewrites its page"
# The experiments that record a history, and the kill experiment (its figures are read from its records).
REPORTS = {split_brain.NAME: split_brain.report, fate.NAME: fate.report, sockets.NAME: sockets.report,
           quorum.NAME: quorum.report, powerloss.NAME: powerloss.report, stores.NAME: stores_report.report,
           kill.NAME: kill.report, etcd_loss.NAME: etcd_loss.report, sticky.NAME: sticky.report,
           capacity.NAME: capacity.report, scaling.NAME: scaling_report.report,
           bench_sockets.NAME: sockets_report.report,
           **{module.NAME: module.report for module in (sessions, presence, posts, profile_report, against_report,
                                                        replication_report, shards_report)}}


def add_arguments(parser):
    parser.add_argument("folder", type=Path, help="the run's folder (its --out)")


def main(args):
    try:
        return recheck(args.folder)
    except (OSError, ValueError, KeyError) as exc:
        print(f"loadtest: cannot recheck {args.folder}: {exc}", file=sys.stderr)
        return 1


def recheck(folder):
    """Every figure, chart and the verdict of a finished run again, from its history.jsonl alone (the kill
    experiment: from its records and recordings); the page too.

    The run's command and times come from its run.json, or from the history's header when the run ended before
    writing its page.
    """
    if (folder / history.FILE).exists():
        header, _ = history.load(folder / history.FILE)
    else:  # the kill experiment keeps a history per configuration (raw/) and is known by its run.json
        header = {"experiment": json.loads((folder / page.RUN_FILE).read_text())["kind"]}
    report = REPORTS.get(header["experiment"])
    if report is None:
        raise ValueError(f"{folder}: no recheck for the experiment {header['experiment']!r}")
    if (folder / page.RUN_FILE).exists():
        record = json.loads((folder / page.RUN_FILE).read_text())
    else:  # the run ended before its page: what the history's header says of it
        record = {"kind": header["experiment"], "command": header["command"],
                  "started": header["started"][:19] + "+00:00", "finished": None}
    run = page.Run(record["kind"], record["command"], record["started"])
    judged = report(folder, run, finished=record["finished"])[1]
    # No verdict: bench, powerloss, etcd-loss, sticky, capacity or scaling (targets, bounds and predictions beside
    # the figures), or a kill run without the rolling restart's hypothesis (--quick's headline check set that run's
    # exit status; recheck does not repeat it).
    if judged is None:
        print(f"report: {folder / page.REPORT_FILE}")
        return 0
    return verdict.ended(folder, judged)
