"""`bench-sockets`' figures from its history alone: bench-sockets.json, its tables, its verdict and its page.

`bench-sockets` (sockets.py) records into history.jsonl its parameters and
the checkout's commit (the "started" sample: `started()`), then one sample
per configuration and round with what that round read (`measured()`:
"config", "round", "readings", as sockets_runs.py returns them). Every
figure bench-sockets.json, the terminal and the page show is computed here
from those samples, through sockets_figures.py, by the run and by `python
-m loadtest recheck` alike, so a recheck writes the same JSON. The JSON
keeps the shape it had, with "started" (the history's header), "finished"
(run.json's) and "commit" added.
"""

import json
from pathlib import Path

from loadtest.bench.sockets_figures import fanout_figures, idle_figures, over_rounds
from loadtest.harness import history, recorded, verdict
from loadtest.harness.verdict import Check
from loadtest.reports import page
from loadtest.reports import tables as rendered
from loadtest.reports.tables import Table

NAME = "bench-sockets"
FIGURES = "bench-sockets.json"  # the JSON of figures
IDLE_TARGET = 5000  # idle sockets one instance holds (issue #32)
P99_TARGET_MS = 50  # a post's p99 to a room of 100 over three instances, Redis layer (issue #32)


def started(out, *, command, parameters, commit):
    """The run's history in out, its parameters (bench-sockets.json's "parameters") and the commit it ran at
    first, before any round."""
    return recorded.started(out, experiment=NAME, command=command, parameters=parameters, commit=commit)


def measured(recording, config, number, readings):
    """Record one configuration's round: what it read (sockets_runs.py), every figure's only source."""
    recording.sample(config=config, round=number, readings=readings)


def figures(header, events):
    """bench-sockets.json's content from the history (but "finished", which run.json gives): the rounds' figures,
    their medians and ranges, and the verdict."""
    given = recorded.parameters(events, header["experiment"])
    commit = next(e.get("commit") for e in events if e["type"] == "sample" and e.get("condition") == "started")
    rounds = [{"round": e["round"], "config": e["config"], "figures": _figures(e["config"], e["readings"], given)}
              for e in events if e["type"] == "sample" and "readings" in e]
    summary = {name: over_rounds([r["figures"] for r in rounds if r["config"] == name])
               for name in dict.fromkeys(r["config"] for r in rounds)}
    return {"command": header["command"], "started": header["started"], "finished": None, "commit": commit,
            "parameters": given, "rounds": rounds, "summary": summary,
            "verdict": verdict.judge(hypothesis(idle=given["idle"]), summary)}


def _figures(config, readings, given):
    if config == "idle":
        return idle_figures(readings)
    return fanout_figures(readings, users=given["fanout_users"], messages=given["messages"])


def report(out, run, *, finished=None):
    """bench-sockets.json and the page from out/history.jsonl alone; returns (the JSON's content, the verdict)."""
    out = Path(out)
    header, events = history.load(out / history.FILE)
    figured = figures(header, events)
    figured["finished"] = write(out, run, figured, finished=finished)["finished"]
    (out / FIGURES).write_text(json.dumps(figured, indent=1))
    return figured, figured["verdict"]


def write(out, run, figured, *, finished=None):
    """The page (reports/page.py): the verdict, the setting, the tables; returns run.json's record."""
    given = figured["parameters"]
    return page.write(
        out, run, title="What WebSockets cost: idle sockets, a room's fan-out, push against poll",
        headline=headline(figured["summary"]), verdict=figured["verdict"], finished=finished, sections=[
            ("", page.paragraphs(
                f"{given['rounds']} alternating rounds, each configuration on a fresh cluster of uvicorn instances "
                "behind HAProxy; each figure the median (min-max) of the rounds.",
                f"Every figure is computed from history.jsonl (recheck: python -m loadtest recheck {out}).")),
            ("", rendered.html(tables(figured["rounds"], figured["summary"])))])


def headline(summary):
    """The idle sockets held and their memory, and each fan-out's p99 and CPU by poll over push."""
    parts = []
    if idle := summary.get("idle"):
        parts.append(f"idle: {_cell(idle['held'], 'g')} of {_cell(idle['asked'], 'g')} sockets held, "
                     f"{_cell(idle['memory_per_socket_kib'], '.1f')} KiB each")
    for name, fanout in summary.items():
        if name != "idle":
            parts.append(f"{name}: p99 {_cell(fanout['p99_ms'], '.1f')} ms, poll over push CPU "
                         f"{_cell(fanout['poll_to_push_cpu'], '.2f')}")
    return "; ".join(parts) or "no configuration measured"


def hypothesis(*, idle):
    """What the run should show: every socket held and every delivery made; the issue's targets where they apply."""
    checks = [Check("idle", f"idle sockets held through HAProxy, of the {idle} opened, in every round",
                    "held.min", idle, None)]
    if idle >= IDLE_TARGET:
        checks.append(Check("idle", f"one instance holds at least {IDLE_TARGET:,} idle sockets (target)",
                            "held.min", IDLE_TARGET, None))
    for name in ("fanout-redis", "fanout-memory"):
        checks += [Check(name, "deliveries missing by push, in any round", "missing.max", 0, 0),
                   Check(name, "deliveries missing by poll, in any round", "poll.missing.max", 0, 0)]
    checks += [
        Check("fanout-redis", "instances holding the room's sockets, in every round (round robin through HAProxy)",
              "instances_holding.min", 3, 3),
        Check("fanout-redis", f"p99 ms of a post to the room spread over three instances, Redis layer "
                              f"(target: at most {P99_TARGET_MS})", "p99_ms.median", 0, P99_TARGET_MS),
    ]
    return checks


def tables(rounds, summary):
    """The idle sockets' table and the fan-out's, from the summary (and each round's counts by name)."""
    out = []
    if "idle" in summary:
        figures = summary["idle"]
        out.append(Table.of(
            ["sockets asked", "opened", "held", "not held (reasons, all rounds)", "memory per socket KiB",
             "RSS before MiB", "RSS after MiB", "seconds to open"],
            [[*(_cell(figures[key], "g") for key in ("asked", "opened", "held")), _reasons(rounds, "idle"),
              _cell(figures["memory_per_socket_kib"], ".1f"), _cell(figures["rss_before_kib"], ".0f", 1024),
              _cell(figures["rss_after_kib"], ".0f", 1024), _cell(figures["open_seconds"], ".1f")]],
            title="Idle sockets on one instance", caption="through HAProxy, Redis channel layer and presence"))
    fanouts = [name for name in summary if name != "idle"]
    if fanouts:
        out.append(Table.of(
            ["configuration", "sockets per instance (each round)", "received / expected", "p50 ms", "p99 ms",
             "max ms", "poll p50 ms", "push CPU µs per delivery", "poll CPU µs per delivery", "poll / push CPU"],
            [[name, "; ".join(", ".join(f"{node} {n}" for node, n in r["figures"]["spread"].items())
                              for r in rounds if r["config"] == name),
              f"{_cell(summary[name]['received'], 'g')} / {_cell(summary[name]['expected'], 'g')}",
              *(_cell(_at(summary[name], key), ".1f") for key in ("p50_ms", "p99_ms", "max_ms", "poll.p50_ms")),
              *(_cell(_at(summary[name], key), ".0f") for key in ("cpu_us_per_delivery", "poll.cpu_us_per_delivery")),
              _cell(summary[name]["poll_to_push_cpu"], ".2f")] for name in fanouts],
            title="A room's fan-out", caption=f"p99 target with the Redis layer: at most {P99_TARGET_MS} ms"))
    return out


def _reasons(rounds, name):
    """The refusals and closes of every round, summed by reason: "0" when there were none."""
    counts = {}
    for r in rounds:
        if r["config"] == name:
            for kind, found in (("refused", r["figures"]["refused"]), ("closed", r["figures"]["closed_while_held"])):
                for reason, n in found.items():
                    counts[f"{kind} {reason}"] = counts.get(f"{kind} {reason}", 0) + n
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())) or "0"


def _at(figures, path):
    """The figure at a dotted path ("poll.p50_ms")."""
    for part in path.split("."):
        figures = figures[part]
    return figures


def _cell(spread, spec, divisor=1):
    """A figure over rounds as "median (min-max)", or the median alone when the range reads as one; "-" when not
    measured."""
    if spread is None:
        return "-"
    low, mid, high = (f"{spread[key] / divisor:{spec}}" for key in ("min", "median", "max"))
    return mid if low == high else f"{mid} ({low}-{high})"
