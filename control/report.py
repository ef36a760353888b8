"""A control-room run's page: report.html and run.json beside its history, written when the run closes.

The loadtest's page shape (loadtest/reports/page.py), so `python -m loadtest
index` lists control-room runs beside the experiments'. No verdict: a
control-room run tests no hypothesis; its figures are the checkers' over
every operation of the run, and its faults as recorded.
"""

from html import escape

from control.load import final_figures
from loadtest.harness import history
from loadtest.reports import page
from loadtest.reports.tables import Table


def write(folder, run_info):
    """Write the run's page from its history.jsonl alone; return run.json's record."""
    header, events = history.load(folder / history.FILE)
    ops = [event for event in events if event["type"] == "op" and event["what"] != "presence-read"]
    figures = final_figures(ops) if ops else {}
    faults = [event for event in events if event["type"] == "fault"]
    headline = (f"{len(faults)} faults; {figures.get('sessions_lost', 0)} users lost their session, "
                f"{figures.get('writes_lost', 0)} of {figures.get('writes_acked', 0)} acknowledged writes lost")
    sections = [
        ("What users lost", Table.of(["figure", "value"], [[key, value] for key, value in figures.items()]).html()
         if figures else "<p>No load ran.</p>"),
        ("Faults", Table.of(["action", "target", "sent (s)", "took effect (s)", "ended (s)", "refused"],
                            [[f["action"], f["target"], f["sent"], f["effect"], f["ended"], f.get("error", "")]
                             for f in faults]).html() if faults else "<p>None.</p>"),
        ("History", f"<p>Every figure comes from <code>{escape(history.FILE)}</code> beside this page "
                    "(schema 1: docs/design/harness.md).</p>"),
    ]
    run = page.Run("control", header["command"], run_info["started"])
    return page.write(folder, run, title=f"Control room run {run_info['id']}", headline=headline, sections=sections)
