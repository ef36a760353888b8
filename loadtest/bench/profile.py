"""`bench-profile`: where an instance's CPU goes under the poll mix, layer by layer.

One instance of the site on the chosen session store takes the poll mix
straight from wrk while py-spy samples it from outside (no change to the
process, `--nonblocking` so the sampler never pauses it, `--gil` so only
the thread holding the interpreter lock counts: CPU spent in Python, not
threads waiting for the lock or for a store's answer). The run records
what it measured into history.jsonl, py-spy's samples into py-spy.txt
beside it; profile_report.py charges each sample to a layer and computes
profile.json and the page from those two files alone.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import DeployError, require, web
from labcore import registry
from loadtest.bench import cost, profile_report, wrk

NAME = profile_report.NAME
HELP = "CPU per layer of one instance under the poll mix (py-spy), and store commands per request"
INDEXED = True  # its report is listed in results/index.html
STACKS = "py-spy.txt"  # py-spy's samples, beside the history: the raw record the layers are computed from


def add_arguments(parser):
    parser.add_argument("--sessions", default="redis", help="a SESSION_STORE (Django's stock engines too), "
                        "with settings of its own as bench's rows take them: redis:STORE_BREAKER_INTERVAL=0")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--server", default="gthread:8", help="how the instance is served (deploy/web.py)")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench-profile")


def main(args):
    out = args.out / args.sessions.replace(":", "-")
    out.mkdir(parents=True, exist_ok=True)
    report = profile(args.sessions, seconds=args.seconds, connections=args.connections, port=args.port,
                     out=out, server=args.server, command=args.run.command)
    profile_report.write(out, args.run, report)
    print(profile_report.setting(report))
    print(profile_report.table(report).markdown())
    print(f"\n{profile_report.COMMANDS_NOTE}")
    for line in profile_report.commands(report):
        print(f"  {line}")
    print(f"figures: {out / profile_report.FIGURES}; samples: {out / STACKS}; report: {out / 'report.html'}")
    return 0


RATE = 250  # samples a second: enough for shares to 1 % in a few seconds, light for the process


def py_spy():
    """py-spy, from this environment (pip's `py-spy`) or the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise DeployError("py-spy is not installed: pip install py-spy (scripts/setup.sh installs it)")
    return found


def profile(row, *, seconds, connections, port, out, server=web.DEFAULT, rate=RATE,
            command="python -m loadtest bench-profile"):
    """Profile one instance on `row`'s store under the poll mix; return its layers, CPU a request and commands.

    `row` is a store, or a store with settings of its own as `bench` takes them (redis:STORE_BREAKER_INTERVAL=0);
    not a store under a topology (ValueError).
    wrk's figures, the name of py-spy's file and the store commands go into
    out/history.jsonl as they are measured, and the report (profile.json)
    is computed from it (profile_report.py).
    """
    parsed = cost.parse_row(row)
    if parsed.topology_name:
        raise ValueError(f"{row!r}: bench-profile starts a store alone (its store commands are counted on one "
                         "Redis); bench takes a topology")
    store, settings = parsed.store, parsed.settings
    require("wrk", "wrk")
    spy = py_spy()
    scripts = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    (scripts / "poll.lua").write_text(wrk.POLL_MIX)
    state = out / "cluster"
    recorded = profile_report.started(out, command=command, store=row, server=server, seconds=seconds,
                                      connections=connections, rate=rate)
    try:
        cluster = deploy.up(instances=1, sessions=store, presence=registry.session_store(store).presence,
                            server=server, port=port,
                            env={**wrk.BENCH_ENV, **cost.CLUSTER_ENV, **settings},
                            durable=wrk.DURABLE, relays=wrk.RELAYS, state_dir=state)
        env = wrk.log_in(cluster.url)
        app1 = cluster.instances["app1"]
        direct = f"http://127.0.0.1:{app1['port']}"
        raw = out / STACKS
        sampler = subprocess.Popen(
            [spy, "record", "--pid", str(app1["pid"]), "--subprocesses", "--gil", "--nonblocking",
             "--rate", str(rate), "--duration", str(seconds), "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        recorded.sample(wrk=wrk.run_wrk(direct, scripts / "poll.lua", env, seconds, connections, app1["pid"]))
        _, errors = sampler.communicate(timeout=seconds + 120)
        if sampler.returncode or not raw.exists():
            raise DeployError(f"py-spy failed: {errors.strip()[-500:]}")
        recorded.sample(stacks=STACKS)
        recorded.sample(commands=cost.commands_per_request(cluster, env, direct, floor=cost.has_floor(row)))
    finally:
        recorded.close()
        deploy.down(state)
        shutil.rmtree(scripts, ignore_errors=True)
    return profile_report.written(out)
