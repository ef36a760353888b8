"""A real `bench-posts` run, tiny (18 posts a variant on a fresh SQLite, which needs no server): the fresh
process's readings land in history.jsonl as raw batches, and `recheck` writes the same bench-posts.json."""

import json
import shutil

from loadtest.__main__ import main
from loadtest.bench import posts
from loadtest.harness import history
from loadtest.reports import page


def test_a_real_bench_posts_run_saves_its_raw_batches_and_recheck_writes_the_same_json(tmp_path, capsys):
    run, again = tmp_path / "run", tmp_path / "again"
    assert main([posts.NAME, "--databases", "sqlite", "--repeat", "18", "--out", str(run)]) == 0
    own = json.loads((run / f"{posts.NAME}.json").read_text())
    assert [(row["database"], row["posts_per_batch"]) for row in own] == [("sqlite3", 2)]
    header, events = history.load(run / history.FILE)
    assert header["experiment"] == posts.NAME
    assert [(e["database"], e["measure"], e["calls"], len(e["seconds"])) for e in events if "measure" in e] == [
        ("sqlite3", "unlocked", 2, 9), ("sqlite3", "locked", 2, 9)]
    again.mkdir()
    shutil.copy(run / history.FILE, again)
    assert main(["recheck", str(again)]) == 0
    assert json.loads((again / f"{posts.NAME}.json").read_text()) == own
    assert (run / page.REPORT_FILE).exists() and "figures: " in capsys.readouterr().out
