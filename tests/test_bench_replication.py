"""python -m loadtest bench-replication --quick: replicas at a distance, real clusters, each figure beside its
prediction. Figures are not checked against their predictions here (a busy machine moves them); what is checked
is that the run measures every (N, k) with every write confirmed by k replicas, that a replica 5 ms away
makes a write that waits for it take at least its 10 ms round trip, and that the run's history alone gives its
figures again."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.__main__ import main
from loadtest.harness import history

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_replication_measures_each_write_beside_its_prediction(tmp_path):
    out = Path(tempfile.mkdtemp(prefix="lab-bench-"))  # short: HAProxy's socket path has at most 97 bytes
    try:
        done = subprocess.run([sys.executable, "-m", "loadtest", "bench-replication", "--quick", "--distances", "5",
                               "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        check(out, done)
        shutil.copy(out / history.FILE, tmp_path)
        assert main(["recheck", str(tmp_path)]) == 0
        assert (tmp_path / "bench-replication.json").read_text() == (out / "bench-replication.json").read_text()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check(out, done):
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    report = json.loads((out / "bench-replication.json").read_text())
    assert report["distances_ms"] == [5]
    for store in ("redis", "postgres"):
        rows = {row["k"]: row for row in report["stores"][store]}
        assert sorted(rows) == [0, 1] and all(row["replicas"] == 1 for row in rows.values())
        assert rows[0]["predicted_ms"] == rows[0]["median_ms"]
        assert rows[1]["predicted_ms"] == round(rows[0]["median_ms"] + 2 * 5, 3)
        assert rows[1]["difference_ms"] == round(rows[1]["median_ms"] - rows[1]["predicted_ms"], 3)
        assert rows[1]["median_ms"] >= 2 * 5  # the round trip to the replica, at least
        assert rows[1]["short"] == 0 and rows[1]["writes_per_s_per_connection"] > 0
    assert "| redis | 1 | 5 | 1 |" in done.stdout
    assert (out / "report.html").exists() and json.loads((out / "run.json").read_text())["kind"] == "bench-replication"
    assert not list((out / "clusters").glob("*/cluster.json"))  # every cluster down
