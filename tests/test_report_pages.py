"""One page shape for every experiment, and the index of runs: from fabricated run folders, no cluster."""

import json
import re

from loadtest.__main__ import main
from loadtest.experiments import fate
from loadtest.reports import page
from loadtest.reports.svg import bar_chart
from loadtest.reports.tables import Table

OFFLINE = re.compile(r"""(src|href)=["']?(https?:)?//""")


def test_a_page_shows_its_command_headline_tables_and_inline_charts_and_records_its_run(tmp_path):
    run = page.Run.of(["quorum", "--shapes", "3/2/2", "--out", "a b"])
    record = page.write(tmp_path, run, title="Quorums <exhibit>", headline="0 of 10 reads stale", sections=[
        ("Table", Table.of(["shape", "stale"], [["3/2/2", "0 %"]], title="3/2/2", caption="held").html()),
        ("", page.charts([bar_chart("stale", [("3/2/2", 0.0)])])),
    ])

    html = (tmp_path / "report.html").read_text()
    assert "<h1>Quorums &lt;exhibit&gt;</h1>" in html and "0 of 10 reads stale" in html
    assert "python -m loadtest quorum --shapes 3/2/2 --out &#x27;a b&#x27;" in html
    assert "<b>3/2/2</b>: held" in html and "<td>0 %</td>" in html and "<th scope=col>shape</th>" in html
    assert "<svg" in html and not OFFLINE.search(html), "the page must be one file that works offline"
    assert json.loads((tmp_path / "run.json").read_text()) == record
    assert (record["kind"], record["report"]) == ("quorum", "report.html")
    assert record["started"] <= record["finished"] and "Python" in record["machine"]


def fabricated_run(folder, kind, started, headline):
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<!doctype html>")
    (folder / "run.json").write_text(json.dumps({"kind": kind, "title": kind, "command": f"python -m loadtest {kind}",
                                                 "started": started, "finished": started, "headline": headline,
                                                 "report": "report.html"}))


def test_the_index_lists_runs_newest_first_with_links_and_names_a_broken_run_json(tmp_path, capsys):
    fabricated_run(tmp_path / "split-brain", "split-brain", "2026-11-23T10:00:00+00:00", "404 of 813 lost")
    fabricated_run(tmp_path / "bench-servers" / "sync", "fate", "2026-11-24T09:00:00+00:00", "12 of 40 lost")
    (tmp_path / "quorum").mkdir()
    (tmp_path / "quorum" / "run.json").write_text('{"kind": "quorum", "star')
    fabricated_run(tmp_path / "fate", "fate", "2026-11-24T08:00:00+00:00", "0 lost")
    record = json.loads((tmp_path / "fate" / "run.json").read_text())
    (tmp_path / "fate" / "run.json").write_text(json.dumps({**record, "report": "../../etc/passwd"}))
    fabricated_run(tmp_path / "sticky", "sticky", "2026-11-24T07:00:00+00:00", "CV 0.7")
    record = json.loads((tmp_path / "sticky" / "run.json").read_text())
    (tmp_path / "sticky" / "run.json").write_text(json.dumps({**record, "report": None}))

    assert main(["index", "--results", str(tmp_path)]) == 0

    out, err = capsys.readouterr()
    assert f"skipped {tmp_path / 'quorum' / 'run.json'}" in err and "index of 2 runs" in out
    assert "fate/run.json: its report" in err and "sticky/run.json: its report is None" in err
    html = (tmp_path / "index.html").read_text()
    assert html.index("12 of 40 lost") < html.index("404 of 813 lost"), "newest first"
    assert 'href="bench-servers/sync/report.html"' in html and 'href="split-brain/report.html"' in html
    assert "quorum/run.json" in html  # named on the page too


def fate_history(path):
    """A fate run by hand: primary-connection (one user) and lease, as the run would record them."""
    def op(n, scenario, what, invoked, completed, outcome="ok", value=None, refusal=None, node="app1"):
        return {"type": "op", "id": n, "scenario": scenario, "who": "ann", "what": what, "node": node,
                "invoked": invoked, "completed": completed, "outcome": outcome, "value": value, "refusal": refusal}

    def sample(scenario, at, **observed):
        return {"type": "sample", "scenario": scenario, "at": at, **observed}

    primary, lease = "primary-connection", "lease"
    events = [
        {"type": "header", "schema": 1, "experiment": "fate", "command": "python -m loadtest fate --seconds 8",
         "started": "2026-12-06T17:00:00.000+00:00"},
        sample(primary, 0.0, condition="started", parameters={"seconds": 8, "users": 1}),
        op(1, primary, "login", 0.1, 0.2), op(2, primary, "write", 1.0, 1.1, value=1),
        {"type": "fault", "id": 3, "scenario": primary, "action": "partition", "target": "redis1", "sent": 2.0,
         "effect": 2.0, "ended": 9.0},
        op(4, primary, "write", 2.5, 2.6, value=2), sample(primary, 5.5, condition="promoted"),
        op(5, primary, "read", 5.9, 6.0, value=1),  # write 2 gone, though a later write may hide it
        op(6, primary, "write", 6.1, 6.2, value=3), op(7, primary, "write", 6.5, 6.6, "failed", 4, "503"),
        sample(primary, 10.0, condition="converged"),
        op(8, primary, "final-read", 10.1, 10.2, value=1, node="haproxy"),
        sample(primary, 11.0, condition="after heal"), op(9, primary, "write", 11.5, 11.6, value=5),
        sample(lease, 20.0, condition="started", parameters={"seconds": 8, "users": 1}),
        sample(lease, 22.0, holder={"old": "app1", "old_token": 3, "new": "app2"}),
        {"type": "fault", "id": 10, "scenario": lease, "action": "partition", "target": "app1", "sent": 24.0,
         "effect": 24.0, "ended": 30.7},
        sample(lease, 26.1, condition="holder stopped acting"), sample(lease, 27.0, condition="holder gave up"),
        sample(lease, 27.6, condition="other took over"), sample(lease, 27.7, takeover={"this_instance": {"token": 4}}),
        sample(lease, 30.8, final={"timings": {"ttl": 3, "renew_every": 1, "retry": 0.5}, "recent_runs": [],
                                   "highest_token_in_database": 4, "last_refused_write": None}),
    ]
    path.write_text("".join(json.dumps(event) + "\n" for event in events))


def test_the_fate_page_counts_from_the_history_and_draws_each_scenarios_timeline_with_its_marks(tmp_path):
    fate_history(tmp_path / "history.jsonl")

    text, judged = fate.report(tmp_path, page.Run.of(["fate", "--seconds", "8"]))

    (primary, lease) = json.loads((tmp_path / "fate.json").read_text())["results"]
    assert primary["windows"] == {"before promotion": {"acknowledged": 1, "lost": 1, "refused": 0, "lost_pct": 100.0},
                                  "after promotion": {"acknowledged": 1, "lost": 1, "refused": 1, "lost_pct": 100.0},
                                  "after heal": {"acknowledged": 1, "refused": 0}}
    assert primary["total"] == {"writes_acknowledged": 3, "writes_lost": 2, "writes_unconfirmed": 0}
    assert primary["sessions_behind_after_heal"] == 1
    assert lease["runs_with_old_token_after_takeover"] == 0 and lease["took_over_after_giving_up"]
    assert judged["held"], judged
    html = (tmp_path / "report.html").read_text()
    assert "primary-connection: 1 of 1 writes acknowledged after the promotion lost" in html
    assert "another instance acting 3.6 s after the partition" in html
    assert html.count("<svg") == 2 and "answered 503" in html and "other took over (+3.6 s)" in html
    assert html.count('stroke-dasharray="4 3"') >= 4 + 5, "every mark drawn"
    assert html.index("The hypothesis held.") < html.index("<svg"), "the verdict leads the page"


def test_every_timeline_shades_the_time_each_fault_lasted():
    from loadtest.experiments.kill_report import fault_bands
    from loadtest.experiments.split_brain_tables import chart
    from loadtest.reports.svg import BAND

    faults = [{"at": 30.0, "action": "kill", "target": "app1"}, {"at": 45.0, "action": "pause", "target": "redis1"},
              {"at": 50.0, "action": "promote", "target": ""}, {"at": 60.0, "action": "start", "target": "app1"}]
    assert fault_bands(faults) == [(30.0, 60.0, "app1 down"), (45.0, None, "redis1 paused")]
    result = {"scenario": "redis", "marks": {"partition": 2.0, "promoted": 4.0, "heal": 6.0, "converged": None},
              "timeline": {"minority acked": [1, 2, 0, 0, 0, 0, 3, 3], "majority acked": [1, 2, 2, 2, 2, 2, 3, 3]}}
    svg = chart(result)
    assert svg.count(f'fill="{BAND}"') == 1 and "<title>partition</title>" in svg
    assert svg.count('stroke-dasharray="4 3"') == 3, "every mark that happened, the band's edges too"
