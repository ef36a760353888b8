"""bench-profile, bench-against, bench-replication and bench-shards save their history, and `recheck` computes the
same JSON of figures from that history alone.

Each history here is recorded by the command's own recording functions
(its `started` and the functions that write each kind of sample), with
readings shaped as the run takes them; the JSON the run writes from it is
then compared with what `python -m loadtest recheck` writes in a folder
holding the history alone. Beside them, the histories of three small real
runs (`tests/fixtures/bench-profile-run`, `bench-replication-run` and
`bench-shards-run`, large files gzipped) are rechecked against the JSON
those runs wrote. No cluster: well under a second each.
"""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.bench import against_report, profile_report, replication_report, shards_report
from loadtest.harness import history, recorded
from loadtest.reports import page


def wrk(rps, p99_ms=20.0, **more):
    """One wrk run's figures, as loadtest/bench/wrk.py's run_wrk returns them."""
    return {"rps": rps, "p50_ms": 5.0, "p99_ms": p99_ms, "bad_responses": 0, "generator_cpu": 0.1, **more}


def rechecked(out, tmp_path, figures, *beside):
    """The JSON `recheck` writes from out's history (and the files beside it) alone, in a folder of its own;
    checks it is byte for byte what the run wrote."""
    again = tmp_path / "again"
    again.mkdir()
    for name in (history.FILE, *beside):
        shutil.copy(out / name, again)
    assert main(["recheck", str(again)]) == 0
    assert (again / figures).read_text() == (out / figures).read_text()
    assert (again / page.REPORT_FILE).exists()
    return json.loads((again / figures).read_text())


STACK = 'process 7:"gunicorn";run (threading.py:1010);handle (gunicorn/workers/gthread.py:553)'


def test_bench_profile_recheck_charges_py_spys_samples_to_layers_as_the_run_did(tmp_path):
    out = tmp_path / "run"
    with profile_report.started(out, command="python -m loadtest bench-profile", store="redis", server="gthread:8",
                                seconds=3, connections=2, rate=250) as run:
        run.sample(wrk=wrk(900.0, server_us=400.0))
        redis_read = "load (labcore/sessions/redis.py:30);get (django_redis/cache.py:90);read (redis/connection.py:1)"
        (out / "py-spy.txt").write_text(
            f"{STACK} 50\n{STACK};__call__ (accounts/middleware.py:40) 20\n{STACK};{redis_read} 30\n")
        run.sample(stacks="py-spy.txt")
        run.sample(commands={"poll": {"redis": 1}, "heartbeat": {"redis": 2}})
    own = profile_report.written(out)
    assert own["layers"]["the server"] == 0.5 and own["layers"]["middleware"] == 0.2
    assert own["layers"]["redis-py"] == 0.3 and sum(own["layers"].values()) == pytest.approx(1)
    assert (own["rps"], own["server_us"], own["profiler"]) == (900.0, 400.0, profile_report.PROFILER)
    assert rechecked(out, tmp_path, "profile.json", "py-spy.txt") == own


def test_bench_against_recheck_gives_each_sides_medians_and_ratios(tmp_path):
    out, ref = tmp_path / "run", "40963cf"
    with against_report.started(out, command=f"python -m loadtest bench-against {ref}", ref=ref, server="gthread:8",
                                rounds=2, seconds=1, connections=2) as run:
        run.sample(relays={"this": False, ref: False})
        rates = {(ref, "direct"): [500.0, 400.0], (ref, "lb"): [450.0, 450.0],
                 ("this", "direct"): [1100.0, 1000.0], ("this", "lb"): [900.0, 1000.0]}
        for round_number in range(2):
            for side in ([ref, "this"] if round_number == 0 else ["this", ref]):
                for path in ("direct", "lb"):
                    against_report.measured(run, side=side, path=path, round_number=round_number,
                                            wrk=wrk(rates[side, path][round_number]))
    own = against_report.written(out)
    assert own["direct"]["rps"] == {ref: 500.0, "this": 1100.0}  # the upper median of two rounds, as ever
    assert own["direct"]["ratio"] == {"min": 2.2, "median": 2.5, "max": 2.5}
    assert own["lb"]["ratio"] == {"min": 2.0, "median": 2.222, "max": 2.222}
    assert own["raw"]["this"]["lb"] == [wrk(900.0), wrk(1000.0)] and own["relays"] == {"this": False, ref: False}
    assert rechecked(out, tmp_path, "against.json") == own


def test_bench_replication_recheck_gives_each_point_beside_its_prediction(tmp_path):
    out = tmp_path / "run"
    with replication_report.started(out, command="python -m loadtest bench-replication --quick", stores=["redis"],
                                    replicas=[1], sync=["0", "1"], distances=[5.0], rounds=1, seconds=1,
                                    connections=1) as run:
        replication_report.measured(run, store="redis", replicas=1, k=0, round_number=0,
                                    latencies_ms=[0.2001, 0.3, 0.25], short=0, relay_cpu_s=0.01)
        replication_report.measured(run, store="redis", replicas=1, k=1, round_number=0,
                                    latencies_ms=[10.4, 10.6, 10.5], short=1, relay_cpu_s=0.02)
    own = replication_report.written(out)
    alone, waited = own["stores"]["redis"]
    assert (alone["median_ms"], alone["predicted_ms"], alone["difference_ms"]) == (0.25, 0.25, 0.0)
    assert (waited["median_ms"], waited["predicted_ms"], waited["difference_ms"]) == (10.5, 10.25, 0.25)
    assert (waited["writes_per_s_per_connection"], waited["short"], waited["relays_cpu_pct"]) == (3.0, 1, 2.0)
    assert own["distances_ms"] == [5.0]
    assert rechecked(out, tmp_path, "bench-replication.json") == own


def test_bench_replication_p99_is_the_shared_nearest_rank_percentile(tmp_path):
    """100 writes of 1 to 100 ms: the p99 is the 99th (analysis.percentile, as every other p99 of the lab), not
    the 100th that indexing at int(100 x 0.99) gave."""
    with replication_report.started(tmp_path, command="python -m loadtest bench-replication --quick",
                                    stores=["redis"], replicas=[1], sync=["0", "1"], distances=[5.0], rounds=1,
                                    seconds=1, connections=1) as run:
        for k in (0, 1):
            replication_report.measured(run, store="redis", replicas=1, k=k, round_number=0,
                                        latencies_ms=[float(ms) for ms in range(100, 0, -1)], short=0,
                                        relay_cpu_s=0.0)
    assert [row["p99_ms"] for row in replication_report.written(tmp_path)["stores"]["redis"]] == [99.0, 99.0]


def tick(run):
    """Wait until the history's clock has moved on, so the next event is strictly later than the last."""
    now = run.now()
    for _ in range(100_000):
        if run.now() > now:
            return
    pytest.fail("the history's clock did not move")


def test_bench_shards_recheck_counts_the_sessions_a_shard_loss_failed(tmp_path):
    out = tmp_path / "run"
    ranges, slots = {"redis1": (0, 8191), "redis2": (8192, 16383)}, {"ann": 100, "bob": 9000, "cat": 200}
    with shards_report.started(out, command="python -m loadtest bench-shards", shards=[1, 2], rounds=2, seconds=1,
                               connections=2, instances=2, sessions=3, loss_rounds=1, cores=2) as run:
        for round_number, order in enumerate(([1, 2], [2, 1])):
            for count in order:
                shards_report.measured(run, shards=count, round_number=round_number, wrk=wrk(100.0 * count),
                                       cpu={"instances": 0.5, "redis": 0.1, "haproxy": 0.05})
        shards_report.placed(run, ranges=ranges, slots=slots)
        run.scenario = f"{shards_report.LOSS} 1"
        shards_report.placed(run, ranges=ranges, slots=slots)
        run.complete(run.invoke("bob", "read", node="haproxy"), "failed", refusal=503)  # ended before the kill
        in_flight = run.invoke("ann", "read", node="haproxy")
        tick(run)
        kill = run.fault("kill", "redis1")
        tick(run)
        run.complete(in_flight, "failed", refusal=503)  # began before the kill, ended after: counted
        run.complete(run.invoke("cat", "read", node="haproxy"), "unknown")  # no answer: status 0
        for who in ("bob", "ann", "cat"):
            run.complete(run.invoke(who, "read", node="haproxy"), "ok")
        run.invoke("bob", "read", node="haproxy")  # never ended: not counted
        run.ended(kill)
    own = shards_report.written(out)
    assert own["sessions_per_shard"] == {"redis1": 2, "redis2": 1}
    assert own["throughput"][2]["ratio_to_fewest"] == 2.0 and own["cores"] == 2
    loss, = own["loss"]
    assert (loss["killed"], loss["sessions"], loss["sessions_on_it"]) == ("redis1", 3, 2)
    assert (loss["sessions_failed"], loss["share_failed"], loss["statuses"]) == (2, 0.667, [0, 503])
    assert loss["requests"] == 5 and loss["first_failure_s"] <= 0 <= loss["last_failure_s"]
    assert rechecked(out, tmp_path, "shards.json") == json.loads((out / "shards.json").read_text())


@pytest.mark.parametrize("report", [profile_report, against_report, replication_report, shards_report],
                         ids=lambda module: module.NAME)
def test_a_history_without_its_parameters_is_refused_by_name(report, tmp_path, capsys):
    command = f"python -m loadtest {report.NAME}"
    with history.History(tmp_path / history.FILE, experiment=report.NAME, command=command) as run:
        run.sample(wrk=wrk(100.0))  # a measurement, but no "started" sample before it
    assert main(["recheck", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"its history has no parameters (the \"started\" sample {report.NAME} records first)" in error
    with pytest.raises(ValueError, match="has no parameters"):
        recorded.load(tmp_path)


RECORDED = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("folder, figures, samples", [
    # python -m loadtest bench-profile --sessions redis --seconds 2 --connections 2: wrk's run, the name of
    # py-spy's file, the store commands (py-spy.txt kept gzipped here, unpacked beside the history).
    ("bench-profile-run", "profile.json", 3),
    # python -m loadtest bench-replication --quick --distances 5: per store, k = 0 and k = 1, one round each.
    ("bench-replication-run", "bench-replication.json", 4),
    # python -m loadtest bench-shards --shards 3 --rounds 1 --seconds 1 --connections 2 --instances 1 --sessions 6
    # --loss-rounds 1: one wrk run, where the sessions sit before the loss and at the kill; the reads are operations.
    ("bench-shards-run", "shards.json", 3),
])
def test_recheck_of_a_small_recorded_run_reproduces_its_json_exactly(folder, figures, samples, tmp_path):
    for path in (RECORDED / folder).iterdir():
        if path.name != figures:
            data = path.read_bytes()
            (tmp_path / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(data) if path.suffix == ".gz"
                                                                    else data)
    assert len([e for e in history.load(tmp_path / history.FILE)[1] if e["type"] == "sample"]) == 1 + samples
    assert main(["recheck", str(tmp_path)]) == 0
    assert (tmp_path / figures).read_text() == (RECORDED / folder / figures).read_text()


@pytest.mark.parametrize("command", ["bench", "bench-against", "bench-replication", "bench-shards"])
def test_rounds_below_one_are_refused_naming_the_option_before_anything_runs(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exited:
        main([command, "--rounds", "0", "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert "argument --rounds: at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
