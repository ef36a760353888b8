"""One page shape for every experiment, and the index of runs: from fabricated run folders, no cluster."""

import json
import re

from loadtest import _fate
from loadtest import _page as page
from loadtest.__main__ import main
from loadtest._svg import bar_chart

OFFLINE = re.compile(r"""(src|href)=["']?(https?:)?//""")


def test_a_page_shows_its_command_headline_tables_and_inline_charts_and_records_its_run(tmp_path):
    run = page.Run.of(["quorum", "--shapes", "3/2/2", "--out", "a b"])
    record = page.write(tmp_path, run, title="Quorums <exhibit>", headline="0 of 10 reads stale", sections=[
        ("Table", page.markdown("**3/2/2**: held\n\n| shape | stale |\n|---|---|\n| 3/2/2 | 0 % |")),
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


def test_the_fate_page_draws_each_scenarios_timeline_with_its_marks(tmp_path):
    primary = {"scenario": "primary-connection", "primary_cache": "connection", "users_per_instance": 1,
               "marks": {"partition": 2.0, "promoted": 5.5, "heal": 9.0, "converged": 10.0},
               "sides": {"app1": {}, "app2": {}}, "total": {"writes_acknowledged": 30},
               "windows": {"before promotion": {"acknowledged": 10, "lost": 0, "refused": 2},
                           "after promotion": {"acknowledged": 12, "lost": 7, "refused": 0},
                           "after heal": {"acknowledged": 8, "refused": 0}},
               "writes_rolled_back": 7, "sessions_behind_after_heal": 1,
               "timeline": {"session writes acked": [4] * 12, "acked, then lost": [0] * 6 + [2] * 3 + [0] * 3,
                            "answered 503": [0, 0, 1] + [0] * 9}}
    lease = {"scenario": "lease", "timings": {"ttl": 3, "renew_every": 1, "retry": 0.5},
             "marks": {"partition": 4.0, "holder stopped acting": 6.1, "holder gave up": 7.0,
                       "other took over": 7.6, "heal": 10.7},
             "old_token": 3, "new_token": 4, "highest_token_in_database": 4, "runs_with_old_token_after_takeover": 0}

    _fate.write([primary, lease], tmp_path, page.Run.of(["fate", "--seconds", "8"]))

    html = (tmp_path / "report.html").read_text()
    assert "primary-connection: 7 of 12 writes acknowledged after the promotion lost" in html
    assert "another instance acting 3.6 s after the partition" in html
    assert html.count("<svg") == 2 and "answered 503" in html and "other took over (+3.6 s)" in html
    assert html.count('stroke-dasharray="4 3"') >= 4 + 5, "every mark drawn"
