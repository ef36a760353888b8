"""`python -m loadtest scorecard`: the session-store scorecard, rebuilt from the saved runs, or measured anew.

Without options it rebuilds docs/scorecard.md from the runs under
docs/results/scorecard/ and starts nothing. `--measure` first runs every
command the scorecard needs (scorecard_runs.plan: each kind of run, every
round, the rows in alternating order), each in its own process, printing
each command and the plan's estimated time before it starts; `--dry-run`
prints them and runs nothing. A command that fails is named at the end and
makes the exit status 1; the page is rebuilt from whatever was saved.
"""

import subprocess
import sys
from pathlib import Path

from loadtest.experiments import scorecard_page, scorecard_rows
from loadtest.experiments.scorecard_cells import table_cells
from loadtest.experiments.scorecard_runs import plan

NAME = "scorecard"
HELP = "the session-store scorecard (docs/scorecard.md) from the saved runs; --measure runs them first"
DESCRIPTION = __doc__
ROUNDS = 3


def add_arguments(parser):
    parser.add_argument("--results", type=Path, default=scorecard_page.SHOWN_ROOT,
                        help="the folder of saved runs, <kind>/round<k>/ each")
    parser.add_argument("--page", type=Path, default=Path("docs") / "scorecard.md", help="the page to write")
    parser.add_argument("--measure", action="store_true", help="run every experiment the scorecard needs first")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of each timed run, with --measure")
    parser.add_argument("--dry-run", action="store_true", help="with --measure: print the commands, run nothing")


def main(args):
    rows = scorecard_rows.rows()
    failed = []
    if not args.measure and (args.dry_run or args.rounds != ROUNDS):
        raise ValueError("--dry-run and --rounds go with --measure: without it the page is rebuilt from the saved "
                         "runs")
    if args.measure:
        if args.rounds < 1:
            raise ValueError(f"--rounds wants at least 1, not {args.rounds}")
        failed = measure(rows, args.results, args.rounds, dry_run=args.dry_run)
        if args.dry_run:
            return 0
    build(rows, args.results, args.page, args.rounds)
    print(f"scorecard: {args.page}")
    for argv in failed:
        print(f"loadtest: this run failed: python -m loadtest {' '.join(argv)}", file=sys.stderr)
    return 1 if failed else 0


def build(rows, results, page, rounds=ROUNDS):
    """Write the page from the runs under `results`; return its text."""
    text = scorecard_page.markdown(rows, table_cells(rows, results, page.parent), rounds)
    page.write_text(text)
    return text


def measure(rows, results, rounds, *, dry_run=False):
    """Run (or, dry, print) every command of the plan in order; return the argv of those that failed."""
    steps = plan(rows, results, rounds)
    print(f"{len(steps)} runs: {scorecard_page.duration(steps)}; output under {results}/", file=sys.stderr)
    failed = []
    for kind, number, _, argv in steps:
        print(f"{kind.name}, round {number}: python -m loadtest {' '.join(argv)}", flush=True)
        if not dry_run and subprocess.run([sys.executable, "-m", "loadtest", *argv]).returncode not in (0, 3):
            failed.append(argv)  # 3: a hypothesis did not hold, yet its figures were saved
    return failed
