"""`python -m loadtest index`: results/index.html, every run listed from its run.json, newest first."""

import json
import sys
from html import escape
from pathlib import Path
from urllib.parse import quote

from loadtest.reports import page

NAME = "index"
HELP = "write results/index.html again from the runs' run.json files"


def add_arguments(parser):
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="the folder whose runs (one and two levels below) to list")


def main(args):
    return written(args.results)


def written(results):
    """Write results/index.html; name each run.json it had to skip."""
    runs, skipped = write(results)
    for name, why in skipped:
        print(f"index: skipped {results / name}: {why}", file=sys.stderr)
    print(f"index of {len(runs)} runs: {results / page.INDEX_FILE}")
    return 0


def write(results):
    """Write results/index.html from every run.json one and two levels below; return the runs and the skipped.

    A run.json that cannot be read is skipped and named, never fatal: one
    broken folder must not hide every other run.
    """
    results = Path(results)
    runs, skipped = [], []
    for path in sorted([*results.glob(f"*/{page.RUN_FILE}"), *results.glob(f"*/*/{page.RUN_FILE}")]):
        name = path.relative_to(results).as_posix()
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            missing = [key for key in ("kind", "command", "started", "headline") if key not in record]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            report = (path.parent / _report_name(record)).resolve()
            if not report.is_relative_to(results.resolve()):
                raise ValueError(f"its report {report} is outside {results}")
        except (OSError, ValueError) as failure:
            skipped.append((name, str(failure) or type(failure).__name__))
            continue
        link = report.relative_to(results.resolve()).as_posix() if report.is_file() else None
        runs.append({**record, "link": link})
    runs.sort(key=lambda r: str(r["started"]), reverse=True)
    rows = "".join(
        f"<tr><td>{escape(str(r['kind']))}</td><td>{escape(str(r['started'])[:16].replace('T', ' '))}</td>"
        f"<td>{escape(str(r['headline']))}</td><td><code>{escape(str(r['command']))}</code></td>"
        + (f"<td><a href=\"{escape(quote(r['link']))}\">{escape(r['link'])}</a></td>" if r["link"]
           else "<td>no report</td>")
        + "</tr>" for r in runs)
    note = ("<h2>Skipped</h2>" + page.bullets(f"{name}: {why}" for name, why in skipped)) if skipped else ""
    results.mkdir(parents=True, exist_ok=True)
    (results / page.INDEX_FILE).write_text(page.document("Runs", f"""<h1>Runs</h1>
<p class=meta>{len(runs)} runs found one and two levels below this folder, newest first; rebuilt by
<code>python -m loadtest index --results {escape(str(results))}</code> and after every run.</p>
<table><thead><tr><th scope=col>kind</th><th scope=col>started (UTC)</th><th scope=col>headline</th>
<th scope=col>command</th><th scope=col>report</th></tr></thead><tbody>{rows}</tbody></table>
{note}"""))
    return runs, skipped


def _report_name(record):
    report = record.get("report", page.REPORT_FILE)
    if not isinstance(report, str) or not report:
        raise ValueError(f"its report is {report!r}, not a file name")
    return report
