"""What every command that computes its figures from its history shares: the history begun with the run's
parameters, and read back; and a benchmark's report, its JSON then its page, for the run and recheck alike.

Such a command's history.jsonl (history.py) starts with a "started" sample
holding the run's parameters, then holds the raw readings; its JSON of
figures, tables and page are computed from those events alone, by the run
and by `python -m loadtest recheck`, so both give the same figures. A
history without its parameters (a run stopped before it began, a file cut
short or from elsewhere) is refused by name: without them its figures
cannot be told.
"""

import json
from pathlib import Path

from loadtest.harness import checkers, history


def started(out, *, experiment, command, parameters, digits=3, **noted):
    """A history recording into out/history.jsonl, the run's parameters its first sample; digits: of its times.

    noted: what else that sample says of the run beside its parameters (bench-sockets: the commit it ran at).
    """
    recorded = history.History(Path(out) / history.FILE, experiment=experiment, command=command, digits=digits)
    recorded.sample(condition="started", parameters=parameters, **noted)
    return recorded


def parameters(events, experiment):
    """The run's parameters, from its "started" sample; ValueError naming the experiment when there is none."""
    given = checkers.parameters(events)
    if not given:
        raise ValueError(f"its history has no parameters (the \"started\" sample {experiment} records first): "
                         f"not a whole {experiment} run, so its figures cannot be computed")
    return given


def load(out):
    """(parameters, events) of the finished history in out; ValueError if it records no parameters."""
    header, events = history.load(Path(out) / history.FILE)
    return parameters(events, header["experiment"]), events


def samples(events, key):
    """The samples that carry `key`, in the order they were recorded."""
    return [event for event in events if event["type"] == "sample" and key in event]


def written(out, name, figures):
    """The figures as out/name (JSON, as every benchmark writes its own); returns them."""
    (Path(out) / name).write_text(json.dumps(figures, indent=1))
    return figures


def report(out, run, *, written, page, finished=None):
    """A benchmark's report, for its run and `recheck` alike: written(out) computes it from out's history alone and
    writes its JSON, page(out, run, report, finished=...) its page; returns (report, None): such a benchmark states
    no hypothesis (its targets or predictions stand beside its figures), so recheck gives no verdict."""
    figured = written(out)
    page(out, run, figured, finished=finished)
    return figured, None
