"""The one page writer: report.html and run.json in the run's folder, one shape for every experiment.

Every command that measures something writes its folder's report.html
through write(), and only through it: the title, the exact command, when
and on what it ran, a one-line headline, the verdict on the command's
hypothesis when it states one (loadtest/harness/verdict.py), then the
command's own sections (tables from reports/tables.py, charts, readings).
The page is one self-contained file: inline CSS and inline SVG, nothing
fetched, so it opens offline. run.json beside it says the same in a form
the index of runs reads (reports/index.py).
"""

import json
import os
import platform
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from loadtest.harness.verdict import html as verdict_html

CSS = """
body { font-family: system-ui, sans-serif; color: #1d2430; max-width: 1300px; margin: 0 auto; padding: 1rem 1.5rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #d9dee6; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f1f4f8; }
code { background: #f1f4f8; padding: .1rem .3rem; border-radius: 3px; }
.headline { font-size: 1.1rem; font-weight: 600; }
.verdict { font-weight: 600; }
tr.unmet td { background: #fde8e8; }
.meta { color: #5b6575; font-size: .85rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.configs { display: grid; grid-template-columns: repeat(auto-fill, minmax(660px, 1fr)); gap: 1rem; }
.config { border: 1px solid #d9dee6; border-radius: 8px; padding: .5rem 1rem; }
li { margin: .3rem 0; }
"""
RUN_FILE, REPORT_FILE, INDEX_FILE = "run.json", "report.html", "index.html"


def machine():
    return f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """One command's run: what kind it is, its exact command line, and when it started (UTC)."""

    kind: str
    command: str
    started: str = field(default_factory=_now)

    @classmethod
    def of(cls, argv):
        """The run of `python -m loadtest` with these arguments, starting now."""
        kind = argv[0] if argv and not argv[0].startswith("-") else "run"
        return cls(kind, " ".join(["python -m loadtest", *map(shlex.quote, argv)]))


def write(out, run, *, title, headline, sections, verdict=None, finished=None):
    """Write report.html and run.json in out; sections are (heading, html) pairs, in order.

    verdict: the hypothesis's verdict (harness/verdict.py), kept in run.json
    and shown first; finished: when the run ended, if not now (a recheck).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"kind": run.kind, "title": title, "command": run.command, "started": run.started,
              "finished": finished or _now(), "machine": machine(), "headline": headline, "report": REPORT_FILE}
    if verdict is not None:
        record["verdict"] = verdict
        sections = [("Verdict", verdict_html(verdict)), *sections]
    body = "".join(f"<h2>{escape(heading)}</h2>{html}" if heading else html for heading, html in sections)
    (out / REPORT_FILE).write_text(document(title, f"""<h1>{escape(title)}</h1>
<p class=headline>{escape(headline)}</p>
<p>Command: <code>{escape(run.command)}</code></p>
<p class=meta>{escape(_when(record))}; {escape(record["machine"])}</p>
{body}"""))
    (out / RUN_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def paragraphs(*texts):
    return "".join(f"<p>{escape(text)}</p>" for text in texts if text)


def bullets(lines):
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def charts(svgs):
    """Inline SVG charts side by side."""
    return f"<div class=charts>{''.join(svgs)}</div>"


def _when(record):
    started, finished = record["started"], record["finished"]
    if started[:10] == finished[:10]:
        return f"{started[:10]}, {started[11:19]} to {finished[11:19]} UTC"
    return f"{started} to {finished}"


def document(title, body):
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style></head><body>
{body}
</body></html>
"""
