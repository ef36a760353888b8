"""`bench-against`'s figures from its history alone: against.json, its table and its page.

`bench-against` (against.py) records into history.jsonl, after its
parameters (the "started" sample: "against", the older commit; "server",
"rounds", "seconds", "connections"): whether each side ran latency relays
("relays": {side: true or false}, once both clusters are up), then each
side's measurements, one sample per wrk run ("side": the older commit as
given or "this"; "path": "direct" or "lb"; "round"; "wrk": wrk's figures).
against.json, the terminal's table and the page are computed here from
those samples alone, by the run and by `python -m loadtest recheck`, so a
recheck gives the same figures. against.json keeps the shape it always had.
"""

from loadtest.bench.wrk import median, spread
from loadtest.cli import ratio_text
from loadtest.harness import recorded
from loadtest.reports import page
from loadtest.reports.tables import Table

NAME = "bench-against"
FIGURES = "against.json"
THIS = "this"  # this checkout's side
PATHS = {"direct": "straight to the instance", "lb": "through HAProxy"}


def started(out, *, command, ref, server, rounds, seconds, connections):
    """The run's history in out, its parameters first."""
    return recorded.started(out, experiment=NAME, command=command, parameters={
        "against": ref, "server": server, "rounds": rounds, "seconds": seconds, "connections": connections})


def measured(history, *, side, path, round_number, wrk):
    """One wrk run of one side and path, as its sample."""
    history.sample(side=side, path=path, round=round_number, wrk=wrk)


def figures(given, events):
    """against.json's report, from the history's events alone."""
    ref = given["against"]
    results = {side: {path: [] for path in PATHS} for side in (ref, THIS)}
    for event in recorded.samples(events, "wrk"):
        results[event["side"]][event["path"]].append(event["wrk"])
    if missing := [f"{side} {path}" for side, runs in results.items() for path in PATHS if not runs[path]]:
        raise ValueError(f"the history records no wrk run of {', '.join(missing)}: the run stopped before it")
    relays = recorded.samples(events, "relays")
    if not relays:
        raise ValueError("the history does not say which side ran latency relays: the run stopped before both "
                         "clusters were up")
    report = {"against": ref, "server": given["server"], "rounds": given["rounds"], "seconds": given["seconds"],
              "connections": given["connections"], "relays": relays[-1]["relays"], "raw": results}
    for path in PATHS:
        report[path] = {
            "rps": {side: median([run["rps"] for run in results[side][path]]) for side in results},
            "p99_ms": {side: median([run["p99_ms"] for run in results[side][path]]) for side in results},
            "ratio": spread([a["rps"] / b["rps"] for a, b in zip(results[THIS][path], results[ref][path])]),
        }
    return report


def written(out):
    """The report of the run in out, from its history; against.json written from it."""
    return recorded.written(out, FIGURES, figures(*recorded.load(out)))


def report(out, run, *, finished=None):
    """against.json and the page from out/history.jsonl alone; (report, None): no hypothesis."""
    return recorded.report(out, run, written=written, page=write, finished=finished)


def setting(report):
    return (f"memory stores, poll mix, one instance each; wrk, {report['connections']} connections, "
            f"{report['rounds']} rounds of {report['seconds']} s, alternating; medians (ratio: median and min-max "
            "of the rounds)")


def relays_note(report):
    """A warning when the older commit ran latency relays and this checkout none, else ""."""
    ref = report["against"]
    if not report["relays"].get(ref):
        return ""
    return (f"{ref} ran its latency relays (it has no up --no-relays), this checkout none: its figures include a "
            "relay's hop on every connection")


def table(report):
    """Each path: both sides' requests a second and p99, and this checkout's ratio to the older commit."""
    ref = report["against"]
    rows = [[label, f"{report[path]['rps'][ref]:.0f}", f"{report[path]['rps'][THIS]:.0f}",
             ratio_text(report[path]["ratio"]), f"{report[path]['p99_ms'][ref]:.1f}",
             f"{report[path]['p99_ms'][THIS]:.1f}"] for path, label in PATHS.items()]
    return Table.of(["path", f"{ref} req/s", "this req/s", f"this / {ref}", f"{ref} p99 ms", "this p99 ms"], rows)


def write(out, run, report, *, finished=None):
    """The page (reports/page.py): the setting, the table; every figure from history.jsonl."""
    ref = report["against"]
    page.write(out, run, title=f"This checkout against {ref}", finished=finished,
               headline="; ".join(f"this / {ref} {label}: {ratio_text(report[path]['ratio'])}"
                                  for path, label in PATHS.items()),
               sections=[("", page.paragraphs(setting(report), relays_note(report),
                                              "Every figure is computed from history.jsonl (recheck: python -m "
                                              f"loadtest recheck {out}).")),
                         ("Requests a second", table(report).html())])
