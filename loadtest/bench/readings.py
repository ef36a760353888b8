"""The in-process benchmarks' history and report: `bench-sessions`, `bench-presence`, `bench-posts`.

Each records into out/history.jsonl its parameters first (the "started"
sample: what it measures, "repeat", "durable"), then one sample per
measurement as loadtest.bench.micro read it: "measure" (what was timed),
the configuration ("store", with "online" for presence, or "database") and
the raw reading: "calls" a batch and the "seconds" each of the 9 batches
took; or "bytes" (a session as stored); or "commandstats" (Redis's own
INFO commandstats for the presence script). Every figure (µs a call: the
median batch) is computed from those samples, by the run and by
`python -m loadtest recheck` alike, so both write the same JSON.
"""

import math
import statistics

from loadtest.bench.micro import BATCHES
from loadtest.bench.wrk import DURABLE
from loadtest.harness import recorded
from loadtest.harness.checkers import parameters
from loadtest.reports import page


def recording(out, name, command, **given):
    """A new history in out for the command `name`, its parameters recorded first; ValueError, before anything is
    written, if given["repeat"] cannot fill 9 batches of one call."""
    if given["repeat"] < BATCHES:
        raise ValueError(f"--repeat {given['repeat']}: at least {BATCHES} (9 batches of one call or more)")
    return recorded.started(out, experiment=name, command=command, parameters={**given, "durable": DURABLE})


def loaded(out):
    """The events of out's history; ValueError when it lacks its parameters (what the run measured with, and
    whether its commits were durable, are read from them)."""
    return recorded.load(out)[1]


def measured(events, *keys, of):
    """{configuration: {measure: its sample}}, the configurations (the values of `keys`) in the order measured;
    ValueError when fewer were measured than the parameters name (every combination of the lists `of` names): a
    run that stopped part way has no whole figures, and a recheck must not write them as if it had."""
    found = {}
    for event in events:
        if event["type"] == "sample" and "measure" in event:
            found.setdefault(tuple(event[key] for key in keys), {})[event["measure"]] = event
    given = parameters(events)
    wanted = math.prod(len(given[name]) for name in of)
    if len(found) < wanted:
        done = ", ".join("/".join(map(str, configuration)) for configuration in found) or "none"
        raise ValueError(f"the run stopped before it measured every configuration ({len(found)} of {wanted}: "
                         f"{done}): its history is not a whole run")
    return found


def us(sample):
    """µs a call: the median of the sample's batches."""
    return round(statistics.median([seconds / sample["calls"] * 1e6 for seconds in sample["seconds"]]), 1)


def written(out, name, events, figures, run, *, title, headline, setting, table, finished=None):
    """out/<name>.json (the figures computed from `events`, out's history) and the page: the setting, the
    table; returns (figures, None), as recheck wants of a command that states no hypothesis."""
    recorded.written(out, f"{name}.json", figures)
    durable = "durable: yes" if parameters(events)["durable"] else "durable: NO (DURABLE=0)"
    page.write(out, run, title=title, headline=headline, finished=finished, sections=[
        ("", page.paragraphs(setting, durable, "Every figure is computed from history.jsonl (recheck: python -m "
                                               f"loadtest recheck {out}).")),
        ("Figures", table.html()),
    ])
    return figures, None
