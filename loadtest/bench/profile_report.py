"""`bench-profile`'s figures from its history alone: the layers, profile.json, its table and its page.

`bench-profile` (profile.py) records into history.jsonl, after its
parameters (the "started" sample): wrk's run ("wrk": wrk's figures with the
server's CPU a request), the file py-spy wrote its samples to ("stacks":
py-spy.txt, collapsed stacks, one `frame;frame;... count` a line, kept
beside the history as the raw record rather than copied into it), and the
store commands a request of each kind sends ("commands"). The layers'
shares are computed here from py-spy.txt, the rest from the samples, by the
run and by `python -m loadtest recheck`, so a recheck gives the same
profile.json. profile.json keeps the shape it always had.

Each sample is charged to one layer, the innermost frame that belongs to
one: a session load that waits in redis-py counts for redis-py, the session
engine's own work around it for the session engine, generic library frames
(json, django.utils) for the layer that called them. The shares are of the
samples, so they sum to 100 %; times the server CPU a request, measured
over the same run, they give µs a request per layer.
"""

from collections import Counter
from pathlib import Path

from loadtest.harness import recorded
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-profile"
PROFILER = "py-spy --gil --nonblocking"
FIGURES = "profile.json"

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


def started(out, *, command, store, server, seconds, connections, rate):
    """The run's history in out, its parameters first."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "store": store, "server": server, "seconds": seconds, "connections": connections, "rate": rate,
        "profiler": PROFILER})


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
        raise ValueError("py-spy recorded no samples: was the instance busy?")
    return {layer: samples[layer] / total for layer in [row[0] for row in LAYERS] + [OTHER]}


def figures(out, given, events):
    """profile.json's report, from the history's events and the py-spy file they name."""
    readings = {key: _one(events, key) for key in ("wrk", "stacks", "commands")}
    wrk = readings["wrk"]
    return {"store": given["store"], "server": given["server"], "seconds": given["seconds"],
            "connections": given["connections"], "rate": given["rate"], "profiler": given["profiler"],
            "rps": wrk["rps"], "server_us": wrk["server_us"],
            "layers": breakdown((Path(out) / Path(readings["stacks"]).name).read_text()),  # beside it, nowhere else
            "commands": readings["commands"]}


def _one(events, key):
    found = recorded.samples(events, key)
    if not found:
        raise ValueError(f"the history records no {key!r} sample: the run stopped before it was measured")
    return found[-1][key]


def written(out):
    """The report of the run in out, from its history and py-spy.txt; profile.json written from it."""
    given, events = recorded.load(out)
    return recorded.written(out, FIGURES, figures(out, given, events))


def report(out, run, *, finished=None):
    """profile.json and the page from out/history.jsonl and py-spy.txt alone; (report, None): no hypothesis."""
    return recorded.report(out, run, written=written, page=write, finished=finished)


def table(report):
    """The breakdown: each layer's share of the samples and its µs a request."""
    rows = [[layer, f"{share:.1%}", f"{share * report['server_us']:.0f}"] for layer, share in report["layers"].items()]
    rows.append(["total", f"{sum(report['layers'].values()):.1%}", f"{report['server_us']:.0f}"])
    return Table.of(["layer", "share of CPU", f"µs a request (of {report['server_us']:.0f})"], rows)


def setting(report):
    """What was measured, in one line: the store, the server, the load, the rate and the CPU a request."""
    return (f"{report['store']}: poll mix straight to one instance ({report['server']}), wrk {report['connections']} "
            f"connections for {report['seconds']} s, {report['rps']:.0f} req/s, {report['server_us']:.0f} µs of "
            f"server CPU a request; sampled by {report['profiler']} at {report['rate']} Hz")


def commands(report):
    """One line per request kind: the store commands it sends."""
    return [f"{kind}: {', '.join(f'{n:g} {store}' for store, n in counts.items()) or 'none'}"
            for kind, counts in report["commands"].items()]


COMMANDS_NOTE = "store commands a request (counted by the stores; database statements: tests/test_roundtrips.py)"


def write(out, run, report, *, finished=None):
    """The page (reports/page.py): the setting, the layers, the commands; every figure from the history."""
    top = max((layer for layer in report["layers"] if layer != OTHER), key=report["layers"].get)
    page.write(out, run, title="Where a request's CPU goes, layer by layer", finished=finished,
               headline=f"{report['store']}: {report['server_us']:.0f} µs of server CPU a request, the largest "
                        f"layer {top} ({report['layers'][top]:.0%})",
               sections=[("", page.paragraphs(setting(report), "Every figure is computed from history.jsonl and "
                                              f"py-spy.txt (recheck: python -m loadtest recheck {out}).")),
                         ("Layers", table(report).html()),
                         ("Store commands", page.paragraphs(COMMANDS_NOTE) + page.bullets(commands(report)))])
