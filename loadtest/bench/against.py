"""`python -m loadtest bench-against REF`: the memory poll mix of this checkout against an older commit's.

Each side's measurements go into history.jsonl as they are taken, and
against.json and the page are computed from it (against_report.py), so
`python -m loadtest recheck` gives them again.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import (
    DeployError,
    free_base_port,
    require,
    web,
)
from loadtest.bench import against_report
from loadtest.bench.against_report import THIS
from loadtest.bench.wrk import BENCH_ENV, DURABLE, POLL_MIX, RELAYS, ROOT, log_in, run_wrk
from loadtest.cli import at_least_one

NAME = against_report.NAME
HELP = "the memory poll mix of this checkout against an older commit"
INDEXED = True  # its report is listed in results/index.html


def add_arguments(parser):
    parser.add_argument("ref", help="a commit, tag or branch of this repository")
    parser.add_argument("--rounds", type=at_least_one, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--server", default="gthread:8", help="how this checkout's instance is served")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-against")


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    report = bench_against(args.ref, rounds=args.rounds, seconds=args.seconds, connections=args.connections,
                           out=args.out, server=args.server, command=args.run.command)
    against_report.write(args.out, args.run, report)
    print(against_report.setting(report))
    print(against_report.table(report).markdown())
    if note := against_report.relays_note(report):
        print(note)
    print(f"figures: {args.out / against_report.FIGURES}; report: {args.out / 'report.html'}")
    return 0


def bench_against(ref, *, rounds, seconds, connections, out, server=web.DEFAULT,
                  command="python -m loadtest bench-against"):
    """The memory poll mix of this checkout against commit `ref`'s, one instance each, in rounds A B, B A, ...

    `ref` is checked out into a temporary git worktree with a virtualenv of
    its own (its dependencies as it declared them) and started by its own
    `python -m deploy`; both instances are hit straight and through their
    HAProxy, in alternating order, so each round gives a ratio. Every wrk
    run goes into out/history.jsonl, and the report (against.json) is
    computed from it.
    """
    require("wrk", "wrk")
    scratch = Path(tempfile.mkdtemp(prefix="bench-against-"))
    tree, scripts = scratch / "tree", scratch
    (scripts / "poll.lua").write_text(POLL_MIX)
    old_python = tree / ".venv" / "bin" / "python"
    old_state, new_state = out / "clusters" / "against", out / "clusters" / "this"
    new = old = None
    relays = {THIS: RELAYS}
    recorded = against_report.started(out, command=command, ref=ref, server=server, rounds=rounds, seconds=seconds,
                                      connections=connections)
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True, text=True, timeout=120)
        print(f"installing {ref} into its own virtualenv", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True, timeout=300)
        installed = subprocess.run([str(old_python), "-m", "pip", "install", "-q", "-e", str(tree)],
                                   capture_output=True, text=True, timeout=900)
        if installed.returncode:
            raise DeployError(f"installing {ref} failed: {installed.stderr.strip()[-800:]}")
        print(f"starting {ref}'s cluster and this checkout's", file=sys.stderr)
        old_argv = [str(old_python), "-m", "deploy", "--state-dir", str(old_state)]
        subprocess.run([*old_argv, "up", "--instances", "1", "--sessions", "memory", "--presence", "memory",
                        "--port", str(free_base_port()), *_without_relays(old_argv, tree),
                        *[f"--env={name}={value}" for name, value in BENCH_ENV.items()]],
                       cwd=tree, check=True, capture_output=True, text=True, timeout=300)
        old = json.loads(subprocess.run([*old_argv, "status", "--json"], cwd=tree, check=True,
                                        capture_output=True, text=True, timeout=60).stdout)
        relays[ref] = any(row.get("relay_cpu_s") is not None for row in old["instances"])
        old = {"lb": old["url"], "direct": f"http://127.0.0.1:{old['instances'][0]['port']}"}
        cluster = deploy.up(instances=1, sessions="memory", presence="memory", server=server,
                            port=free_base_port(), env=BENCH_ENV, durable=DURABLE, relays=RELAYS,
                            state_dir=new_state)
        new = {"lb": cluster.url, "direct": f"http://127.0.0.1:{cluster.instances['app1']['port']}"}
        targets = {ref: old, THIS: new}
        recorded.sample(relays=relays)
        sessions = {name: log_in(urls["lb"]) for name, urls in targets.items()}
        for round_number in range(rounds):
            order = [ref, THIS] if round_number % 2 == 0 else [THIS, ref]
            for name in order:
                print(f"round {round_number + 1}/{rounds}: {name}", file=sys.stderr)
                for path in against_report.PATHS:
                    against_report.measured(recorded, side=name, path=path, round_number=round_number, wrk=run_wrk(
                        targets[name][path], scripts / "poll.lua", sessions[name], seconds, connections))
    finally:
        recorded.close()
        if new:
            deploy.down(new_state)
        if old_python.exists():
            subprocess.run([str(old_python), "-m", "deploy", "--state-dir", str(old_state), "down"], cwd=tree,
                           capture_output=True, timeout=120)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       capture_output=True, timeout=120)
        shutil.rmtree(scratch, ignore_errors=True)
    return against_report.written(out)


def _without_relays(old_argv, tree):
    """The older commit's `up` options for a cluster without latency relays, as this checkout's runs: --no-relays
    if its deploy offers it, else none (a commit from before the relays ran none; one from between the relays and
    the option runs them, and the report's "relays" says so)."""
    helped = subprocess.run([*old_argv, "up", "--help"], cwd=tree, capture_output=True, text=True, timeout=60)
    return ["--no-relays"] if "--no-relays" in helped.stdout else []
