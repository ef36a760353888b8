"""`bench-profile`: where an instance's CPU goes under the poll mix, layer by layer.

One instance of the site on the chosen session store takes the poll mix
straight from wrk while py-spy samples it from outside (no change to the
process, `--nonblocking` so the sampler never pauses it, `--gil` so only
the thread holding the interpreter lock counts: CPU spent in Python, not
threads waiting for the lock or for a store's answer). Each sample is
charged to one layer, the innermost frame that belongs to one: a session
load that waits in redis-py counts for redis-py, the session engine's own
work around it for the session engine, generic library frames (json,
django.utils) for the layer that called them. The shares are of the
samples, so they sum to 100 %; times the server CPU a request, measured
over the same run, they give µs a request per layer.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from deploy import cluster as deploy
from deploy.cluster import DeployError, require, web
from labcore import registry
from loadtest.bench import cost, wrk
from loadtest.reports.tables import Table

NAME = "bench-profile"
HELP = "CPU per layer of one instance under the poll mix (py-spy), and store commands per request"


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
                     out=out, server=args.server)
    print(f"{args.sessions}: poll mix straight to one instance ({args.server}), wrk {args.connections} connections "
          f"for {args.seconds} s, {report['rps']:.0f} req/s, {report['server_us']:.0f} µs of server CPU a request; "
          f"sampled by {report['profiler']} at {report['rate']} Hz")
    print(table(report).markdown())
    print("\nstore commands a request (counted by the stores; database statements: tests/test_roundtrips.py)")
    for kind, counts in report["commands"].items():
        print(f"  {kind}: {', '.join(f'{n:g} {store}' for store, n in counts.items()) or 'none'}")
    (out / "profile.json").write_text(json.dumps(report, indent=1))
    print(f"figures: {out / 'profile.json'}; samples: {out / 'py-spy.txt'}")
    return 0


# Layers: a frame belongs to the first whose prefixes its file's path (as py-spy prints it, from the
# import root) starts with, or whose suffix it ends with. Generic library frames (django/utils, json)
# belong to none, so they count for the layer that called them.
LAYERS = [
    ("redis-py", ("redis/", "django_redis/", "hiredis/"), ()),
    ("database", ("django/db/", "sqlite3/", "psycopg/", "psycopg2/"), ()),
    ("memcached client", ("pymemcache/",), ()),
    ("middleware", ("django/middleware/", "whitenoise/", "labcore/proxy.py", "django/utils/deprecation.py"),
     ("middleware.py",)),
    ("session engine", ("labcore/sessions/", "django/contrib/sessions/", "django/core/signing.py",
                        "django/core/cache/", "labcore/serializers.py"), ()),
    ("presence", ("chat/presence/",), ()),
    ("our store helpers", ("labcore/stores.py", "labcore/errors.py", "labcore/connections.py"), ()),
    ("the view", ("chat/", "accounts/", "labcore/", "maintenance/", "labsite/"), ()),
    ("Django request handling", ("django/core/handlers/", "django/urls/", "django/http/", "django/dispatch/",
                                 "django/views/", "django/core/wsgi.py", "django/contrib/auth/", "asgiref/"), ()),
    ("the server", ("gunicorn/", "uvicorn/", "granian/", "gevent/", "threading.py", "concurrent/", "socket.py",
                    "selectors.py", "socketserver.py"), ()),
]
OTHER = "other (interpreter, standard library at the top)"
RATE = 250  # samples a second: enough for shares to 1 % in a few seconds, light for the process


def layer_of(stack):
    """The layer one sampled stack is charged to: its innermost frame that belongs to a layer."""
    for frame in reversed(stack):
        # "function (path:line)"; --subprocesses puts the process first, with no code of its own.
        path = frame[frame.rfind("(") + 1:frame.rfind(":")]
        for layer, prefixes, suffixes in LAYERS:
            if path.startswith(prefixes) or path.endswith(suffixes or ("\0",)):
                return layer
    return OTHER


def breakdown(raw):
    """{layer: share of the samples} from py-spy's raw output (one `frame;frame;... count` per line)."""
    samples = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[layer_of(stack.split(";"))] += int(count)
    total = sum(samples.values())
    if not total:
        raise DeployError("py-spy recorded no samples: was the instance busy?")
    return {layer: samples[layer] / total for layer in [row[0] for row in LAYERS] + [OTHER]}


def py_spy():
    """py-spy, from this environment (pip's `py-spy`) or the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise DeployError("py-spy is not installed: pip install py-spy (scripts/setup.sh installs it)")
    return found


def profile(row, *, seconds, connections, port, out, server=web.DEFAULT, rate=RATE):
    """Profile one instance on `row`'s store under the poll mix; return its layers, CPU a request and commands.

    `row` is a store, or a store with settings of its own as `bench` takes them (redis:STORE_BREAKER_INTERVAL=0).
    """
    store, settings = cost.parse_row(row)
    require("wrk", "wrk")
    spy = py_spy()
    scripts = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    (scripts / "poll.lua").write_text(wrk.POLL_MIX)
    state = out / "cluster"
    try:
        cluster = deploy.up(instances=1, sessions=store, presence=registry.session_store(store).presence,
                            server=server, port=port,
                            env={**wrk.BENCH_ENV, **cost.CLUSTER_ENV, **settings},
                            durable=wrk.DURABLE, relays=wrk.RELAYS, state_dir=state)
        env = wrk.log_in(cluster.url)
        app1 = cluster.instances["app1"]
        direct = f"http://127.0.0.1:{app1['port']}"
        raw = out / "py-spy.txt"
        sampler = subprocess.Popen(
            [spy, "record", "--pid", str(app1["pid"]), "--subprocesses", "--gil", "--nonblocking",
             "--rate", str(rate), "--duration", str(seconds), "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        figures = wrk.run_wrk(direct, scripts / "poll.lua", env, seconds, connections, app1["pid"])
        _, errors = sampler.communicate(timeout=seconds + 120)
        if sampler.returncode or not raw.exists():
            raise DeployError(f"py-spy failed: {errors.strip()[-500:]}")
        commands = cost.commands_per_request(cluster, env, direct, floor=cost.has_floor(row))
    finally:
        deploy.down(state)
        shutil.rmtree(scripts, ignore_errors=True)
    return {"store": row, "server": server, "seconds": seconds, "connections": connections, "rate": rate,
            "profiler": "py-spy --gil --nonblocking", "rps": figures["rps"], "server_us": figures["server_us"],
            "layers": breakdown(raw.read_text()), "commands": commands}


def table(report):
    """The breakdown: each layer's share of the samples and its µs a request."""
    rows = [[layer, f"{share:.1%}", f"{share * report['server_us']:.0f}"] for layer, share in report["layers"].items()]
    rows.append(["total", f"{sum(report['layers'].values()):.1%}", f"{report['server_us']:.0f}"])
    return Table.of(["layer", "share of CPU", f"µs a request (of {report['server_us']:.0f})"], rows)
