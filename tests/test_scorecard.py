"""The session-store scorecard: rebuilt from the committed runs it equals the committed page; every registry store
and deploy topology has a row; a run saved in the real format shows its figure and links to it; no run says "not
measured". No cluster: each run here is written by the experiments' own writers into tmp_path, well under a second.
"""

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from labcore import registry
from loadtest.__main__ import main
from loadtest.bench import cost
from loadtest.experiments import capacity_report, kill_report, kill_run, scorecard, scorecard_page, scorecard_rows
from loadtest.experiments.configs import parse_config
from loadtest.experiments.scorecard_cells import CAPACITY, FIGURE, NOT_APPLICABLE, NOT_MEASURED, Cell, table_cells
from loadtest.experiments.scorecard_runs import CAPACITY_STEPS, KINDS
from loadtest.harness import history
from loadtest.harness.analysis import summarise
from loadtest.harness.nemesis import BROKEN, Step
from loadtest.harness.topologies import TOPOLOGY_FORMS
from loadtest.reports import page
from tests.test_checkers import split_brain_history
from tests.test_loadtest import raw_run

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIES = "users logged out: an instance dies"
WRITES_ON_INSTANCE_DEATH = "acknowledged session writes lost: an instance dies"
PARTITION_WRITES = "acknowledged session writes lost: the store partitioned"


def rebuilt(root, folder):
    rows = scorecard_rows.rows()
    return scorecard_page.markdown(rows, table_cells(rows, root, folder), scorecard.ROUNDS)


def test_the_committed_page_is_what_the_committed_runs_give():
    committed = (ROOT / "docs" / "scorecard.md").read_text()
    assert rebuilt(ROOT / scorecard_page.SHOWN_ROOT, ROOT / "docs") == committed, \
        "docs/scorecard.md differs from its runs: rebuild it with `python -m loadtest scorecard`"


def test_every_registry_store_and_deploy_topology_has_a_row(monkeypatch):
    names = [row.name for row in scorecard_rows.rows()]
    assert {parse_config(name).sessions for name in names} == set(registry.SESSION_STORES)
    for form in TOPOLOGY_FORMS:
        assert any(name.endswith("@" + form.split(",")[0].replace("<k>", "1")) for name in names), form
    assert "memory+sticky" in names and "redis@cluster" in names and "db@patroni" in names
    monkeypatch.setitem(registry.SESSION_STORES, "floppy", registry.SessionStore("floppy", "labcore.sessions.file"))
    page_text = rebuilt(Path("/nonexistent"), ROOT / "docs")
    assert "| `floppy` |" in page_text, "a store the registry gains is a row of the scorecard"


def kill_results(out, name="redis", *, lost_by_user=None, writes_lost=0):
    """A kill run of one configuration, through the kill experiment's own summarise and writer."""
    raw = raw_run(lost_by_user or {}, sessions=name)
    raw["config"] = asdict(parse_config(name))  # as kill_run saves it
    raw["recording"] |= {"session_counts": {"writes_acknowledged": 40, "writes_lost": writes_lost,
                                            "logins_acknowledged": 4}, "failed_spans": [[1003.2, 1003.5]]}
    raw["sessions"] = {"writes_lost": 0, "rolled_back": [], "logins_lost": 0, "users_gone": [],
                       "sessions_read": 4, "unreadable": 0}
    plan = kill_run.Plan([parse_config(name)], 4, 10, 5, "kill", 3, 8100, out, session_writes=True).as_json()
    capacity = {"config": name, "rps": 812.5, "users": 330, "steps": [], "described": "", "transient": [],
                "stopped_by": ""}
    out.mkdir(parents=True)
    kill_report.write(out, page.Run("run", "python -m loadtest run", "2026-12-06T22:00:00+00:00"),
                      {"plan": plan, "capacity": [capacity], "configs": [summarise(raw)]})
    for config in (name, "db"):  # each configuration's history, as kill_run records it
        with history.History(out / "raw" / f"{config}.{history.FILE}", experiment="run", command=config):
            pass


def test_a_saved_kill_run_shows_its_figures_and_links_to_its_page(tmp_path):
    kill_results(tmp_path / "results" / "instance-kill" / "round1", writes_lost=2)
    cells = table_cells(scorecard_rows.rows(), tmp_path / "results", tmp_path)
    cell = cells[("redis", INSTANCE_DIES)]
    assert (cell.status, cell.text) == (FIGURE, "0 of 4 users (0.0 %)")
    assert ("page", "results/instance-kill/round1/report.html") in cell.links
    assert ("figures", "results/instance-kill/round1/results.json") in cell.links
    assert [path for label, path in cell.links if label == "history"] == \
        ["results/instance-kill/round1/raw/redis.history.jsonl"], "its own history, not another configuration's"
    assert cells[("redis", WRITES_ON_INSTANCE_DEATH)].text == "2 of 40 writes (5.0 %)"
    assert cells[("redis", CAPACITY)].status == NOT_MEASURED, "the capacity is its own run's, not the kill run's"
    assert cells[("db", INSTANCE_DIES)].status == NOT_MEASURED, "a row the run did not have"
    written = tmp_path / "scorecard.md"
    scorecard.build(scorecard_rows.rows(), tmp_path / "results", written)
    text = written.read_text()
    assert "0 of 4 users (0.0 %) [page](results/instance-kill/round1/report.html)" in text
    assert "If logins must survive an instance dying: choose from `redis` (0 of 4 users (0.0 %), [run](" in text


def capacity_run(out, rows, bounds=CAPACITY_STEPS):
    """A capacity run of (config, rps, users, steps' held) rows, through the capacity report's own writer; the first
    step has `users` users (no step held: rps and users None, the first step 100 users)."""
    out.mkdir(parents=True)
    step = {"rps": 812.5, "p50_ms": 3, "p99_ms": 40, "failed_pct": 0, "generator_cpu": 0.1, "generator_processes": 1,
            "generator_saturated": False, "machine_busy": 0.5, "queued_peak": 0}
    saved = [{"config": config, "rps": rps, "users": users, "described": "", "transient": [], "stopped_by": "",
              "bounds": asdict(bounds), "steps": [{**step, "users": (users or 100) + n, "held": held}
                                                  for n, held in enumerate(steps)]}
             for config, rps, users, steps in rows]
    capacity_report.write(out, page.Run("capacity", "python -m loadtest capacity", "2026-12-07T10:00:00+00:00"),
                          {"rows": saved, "described": "from 50 users"})


def test_a_saved_capacity_run_gives_the_capacity_cell(tmp_path):
    capacity_run(tmp_path / "capacity" / "round1", [("redis", 812.5, 330, (True, False, False)),
                                                    ("memcached", 900.0, 960, (True,))])
    cells = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    assert (cells[("redis", CAPACITY)].status, cells[("redis", CAPACITY)].text) == (FIGURE, "812.5 req/s (330 users)")
    assert cells[("memcached", CAPACITY)].text == "at least 900 req/s (960 users)", "the steps ran out first"
    assert ("figures", "capacity/round1/capacity.json") in cells[("redis", CAPACITY)].links
    assert cells[("db", CAPACITY)].status == NOT_MEASURED, "a row the run did not have"
    assert cells[("redis", INSTANCE_DIES)].status == NOT_MEASURED


def test_capacity_rounds_show_their_median_and_a_round_that_ran_out_makes_it_a_floor(tmp_path):
    for number, ran_out, etcd in ((1, False, 450), (2, True, 520), (3, False, 530)):
        held = (True,) if ran_out else (True, False, False)
        capacity_run(tmp_path / "capacity" / f"round{number}",
                     [("redis", 700 + 10 * number, 400, (True, False, False)),
                      ("memcached", 900 + number, 960, held),
                      ("cached_db", {1: 797, 2: 805, 3: 799}[number], 500, held),
                      ("etcd", etcd, 300, (True, False, False)),
                      ("file", None, None, (False, False)) if ran_out else ("file", 120, 100, (True, False, False))])
    cells = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    assert cells[("redis", CAPACITY)].text == "720 req/s (710 req/s–730 req/s, 3 rounds)"
    assert cells[("memcached", CAPACITY)].text == "at least 902 req/s (901 req/s–903 req/s, 3 rounds)"
    assert cells[("cached_db", CAPACITY)].text == "799 req/s (797 req/s–805 req/s, 3 rounds)", \
        "a floor above the median leaves the median as it is"
    assert cells[("file", CAPACITY)].values == (120, 0, 120), "a round that held no step counts, as 0"
    guide = next(line for line in rebuilt(tmp_path, tmp_path).splitlines() if "must hold 500 requests" in line)
    chosen, fewer = guide.split("; fewer:")
    assert "`redis` (720 req/s" in chosen and "`etcd` (520 req/s" in fewer, \
        "a row is recommended only if its worst round held 500 req/s"
    (tmp_path / "capacity" / "round3" / "capacity.json").unlink()  # two rounds: the median is their mean
    two = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    assert two[("memcached", CAPACITY)].text == "at least 901.5 req/s (901 req/s–902 req/s, 2 rounds)"


def test_a_capacity_run_that_held_no_step_says_so_and_one_judged_by_other_bounds_is_refused(tmp_path):
    capacity_run(tmp_path / "capacity" / "round1", [("file", None, None, (False, False))])
    cells = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    assert (cells[("file", CAPACITY)].status, cells[("file", CAPACITY)].text) == (FIGURE, "no step held (under 100 "
                                                                                          "users)")
    capacity_run(tmp_path / "capacity" / "round2", [("file", 120, 100, (True, False, False))],
                 bounds=replace(CAPACITY_STEPS, p99_ms=500))
    with pytest.raises(ValueError, match="judged by p99 500 ms"):
        table_cells(scorecard_rows.rows(), tmp_path, tmp_path)


def test_a_split_brain_run_is_read_through_recheck_and_rounds_show_their_spread(tmp_path):
    for number, lost in ((1, True), (2, False)):
        folder = tmp_path / "split-brain" / f"round{number}"
        folder.mkdir(parents=True)
        split_brain_history(folder / history.FILE, lost_on_minority=lost)  # the redis scenario: @sentinel
    cells = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    cell = cells[("redis@sentinel", PARTITION_WRITES)]
    assert cell.status == FIGURE and cell.values == (33.3, 0.0)  # 1 of 3 acknowledged, then 0 of 3
    assert cell.text == "16.6 % (0.0 %–33.3 %, 2 rounds)"
    assert ("history 1", "split-brain/round1/history.jsonl") in cell.links
    assert cells[("redis@sentinel-sync1", PARTITION_WRITES)].status == NOT_MEASURED, "its scenario did not run"


def test_each_replicated_row_is_partitioned_by_the_split_brain_scenario_of_its_topology():
    from loadtest.experiments.scorecard_runs import _scenario

    assert {row.name: _scenario(row) for row in scorecard_rows.rows() if row.replicated} == {
        "etcd": "etcd", "redis@sentinel": "redis", "redis@sentinel-sync1": "redis-sync",
        "redis@cluster": "redis-cluster", "db@pg": "postgres", "db@pg-any1": "postgres-sync", "db@patroni": "patroni",
        "db@patroni-first1": "patroni-sync"}


def test_writes_a_partition_run_could_not_tell_are_shown_and_keep_the_row_from_the_guides_choice(tmp_path):
    folder = tmp_path / "split-brain" / "round1"
    folder.mkdir(parents=True)
    split_brain_history(folder / history.FILE, lost_on_minority=False, final_read_refused=True)
    rows = scorecard_rows.rows()
    cell = table_cells(rows, tmp_path, tmp_path)[("redis@sentinel", PARTITION_WRITES)]
    assert (cell.text, cell.unsure) == ("0 of 3 writes (0.0 %); 2 more unconfirmed", (2,))
    guide = next(line for line in rebuilt(tmp_path, tmp_path).splitlines() if "when the store is partitioned" in line)
    assert "choose from none measured; these lose some, or left some unconfirmed: `redis@sentinel`" in guide


def test_a_missing_run_says_not_measured_and_names_its_command(tmp_path):
    cells = table_cells(scorecard_rows.rows(), tmp_path / "none", tmp_path)
    assert cells[("redis", INSTANCE_DIES)].status == NOT_MEASURED
    assert cells[("signed_cookies", "users logged out: the store's primary dies")].status == NOT_APPLICABLE
    text = rebuilt(tmp_path / "none", tmp_path)
    assert "| `redis` | not measured ([how](#instance-kill)) |" in text
    assert "### instance-kill" in text and \
        "--session-writes --users 30 --out docs/results/scorecard/instance-kill/round1" in text
    assert "python -m loadtest capacity --configs memory+sticky," in text
    assert "If logins must survive an instance dying: not measured yet" in text


def test_measure_dry_run_prints_every_command_and_runs_none(tmp_path, capsys):
    assert main(["scorecard", "--measure", "--dry-run", "--results", str(tmp_path / "runs"),
                 "--page", str(tmp_path / "scorecard.md")]) == 0
    out = capsys.readouterr()
    assert "hours by the commands' own estimates" in out.err
    assert "split-brain, round 3: python -m loadtest split-brain --scenarios etcd,redis,redis-sync" in out.out
    assert f"--out {tmp_path / 'runs' / 'bench' / 'round1'}" in out.out
    # bench: memory alone first, the base of its ratios; the topology rows by their full names.
    assert "bench, round 1: python -m loadtest bench --stores memory,file," in out.out
    assert ",redis@sentinel,redis@sentinel-sync1,redis@cluster,db@pg,db@pg-any1,db@patroni,db@patroni-first1 " \
        "--out" in out.out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "scorecard.md").exists()


def test_dry_run_and_rounds_without_measure_are_refused_and_write_no_page(tmp_path, capsys):
    for extra in (["--dry-run"], ["--rounds", "5"]):
        assert main(["scorecard", *extra, "--results", str(tmp_path / "runs"),
                     "--page", str(tmp_path / "scorecard.md")]) == 1
        assert "go with --measure" in capsys.readouterr().err
    assert not (tmp_path / "scorecard.md").exists()


def test_the_guide_recommends_only_rows_whose_every_round_passes():
    # Two rows, one of which lost writes in one round of three (its median is still 0).
    rows = [row for row in scorecard_rows.rows() if row.name in ("redis@sentinel", "redis@sentinel-sync1")]
    header = PARTITION_WRITES
    cells = {(rows[0].name, header): Cell(FIGURE, "0", (0, 0, 3), (("run", "a"),)),
             (rows[1].name, header): Cell(FIGURE, "0", (0, 0, 0), (("run", "b"),))}
    line = scorecard_page._rule(rows, cells, header, lambda v: v == 0, "lead", "choose from", "these lose some:")
    chosen, _, lost = line.partition("these lose some:")
    assert f"`{rows[1].name}`" in chosen and f"`{rows[0].name}`" in lost


def test_the_store_faults_aim_at_the_server_the_sessions_live_on():
    third = 20
    for name, primary in (("etcd", "etcd:leader"), ("memcached", "memcached"), ("redis@cluster", "redis:primary")):
        assert kill_run.fault_schedule("store-kill", 60, 3, parse_config(name)) == [
            Step(third, "kill", primary), Step(2 * third, "start", BROKEN)], name
    assert kill_run.fault_schedule("store-restart", 60, 3, parse_config("etcd"))[0] == Step(third, "kill",
                                                                                            "etcd:leader")
    # No latency relay in front of memcached's UNIX socket; etcd's members are peers, none of them a replica.
    with pytest.raises(ValueError, match="on memcached the store faults are store-kill"):
        kill_run.fault_schedule("store-latency", 60, 3, parse_config("memcached"))
    with pytest.raises(ValueError, match="not replica-kill"):
        kill_run.fault_schedule("replica-kill", 60, 3, parse_config("etcd"))
    with pytest.raises(ValueError, match="on a Redis Cluster the store faults"):
        kill_run.fault_schedule("replica-kill", 60, 3, parse_config("redis@cluster"))
    rows = {row.name: row for row in scorecard_rows.rows()}
    assert [KINDS["store-kill"].applies(rows[name]) for name in ("etcd", "memcached", "redis@cluster")] == [None] * 3


def test_session_writes_are_counted_under_an_instance_fault_only_when_asked():
    plan = kill_run.Plan([], 4, 10, 5, "kill", 3, 8100, Path("."))
    assert not plan.writes_sessions
    assert kill_run.Plan([], 4, 10, 5, "kill", 3, 8100, Path("."), session_writes=True).writes_sessions
    assert kill_run.Plan([], 4, 10, 5, "store-kill", 3, 8100, Path(".")).writes_sessions
    assert json.loads(json.dumps(plan.as_json()))["session_writes"] is False


def test_a_bench_run_gives_each_store_its_server_cpu_over_memory_per_round(tmp_path):
    measured = (("memory", (1000, 1000, 1000)), ("redis", (1200, 1500, 1100)), ("redis@sentinel", (1300, 1300, 1400)))
    raw = {store: {"poll_direct": [{"server_us": us} for us in rounds]} for store, rounds in measured}
    summary = cost.summarise(raw, list(raw), {store: {"poll_direct": {}} for store in raw})
    folder = tmp_path / "bench" / "round1"
    folder.mkdir(parents=True)
    (folder / "bench.json").write_text(json.dumps({"stores": {"ceiling": {"poll_direct": {}}, **summary}}))
    cells = table_cells(scorecard_rows.rows(), tmp_path, tmp_path)
    column = "server CPU a request, over memory's"
    cell = cells[("redis", column)]
    assert (cell.status, cell.text) == (FIGURE, "1.20× (1.10–1.50 over its rounds)")
    assert cell.links == (("figures", "bench/round1/bench.json"),)
    assert (cells[("memory+sticky", column)].status, cells[("memory+sticky", column)].text) == \
        (FIGURE, "1.00× (1.00–1.00 over its rounds)"), "a row alone is its store's name in bench.json"
    # A topology row is its full name in bench.json; one the run left out says how to measure it.
    assert (cells[("redis@sentinel", column)].status, cells[("redis@sentinel", column)].text) == \
        (FIGURE, "1.30× (1.30–1.40 over its rounds)")
    assert (cells[("db@pg", column)].status, cells[("db@pg", column)].text) == (NOT_MEASURED, "")
    assert "| `db@pg` | not measured ([how](#bench)) |" in rebuilt(tmp_path, tmp_path)
