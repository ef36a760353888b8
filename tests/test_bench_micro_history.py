"""`bench-sessions`, `bench-presence` and `bench-posts` save their history, and `recheck` writes their JSON again
from that history alone; a history without its parameters is refused by name.

Each history here is recorded the way the command records one
(readings.recording, then one sample per line loadtest.bench.micro
prints), with batch times chosen so that each figure is known; and the
fixtures `<command>-run` are the history.jsonl and the JSON of one tiny
real run of each, kept as the run wrote them (its command is in the
history's header). No store, no cluster, well under a second.
"""

import json
import shutil
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.bench import micro, posts, presence, readings, sessions
from loadtest.harness import history
from loadtest.reports import page

RECORDED = Path(__file__).parent / "fixtures"
# A batch of 2 calls: these seconds are 500, 600, 400, 550, 450, 500, 650, 350, 500 µs a call; the median is 500.
SECONDS = [0.0010, 0.0012, 0.0008, 0.0011, 0.0009, 0.0010, 0.0013, 0.0007, 0.0010]


def batches(scale=1.0):
    """A reading of 9 batches of 2 calls each, whose median is 500 µs a call times `scale`."""
    return {"calls": 2, "seconds": [seconds * scale for seconds in SECONDS]}


def record(out, name, lines, **given):
    """A history of `name` in out: its parameters, then each line micro would print, as the command records it."""
    with readings.recording(out, name, f"python -m loadtest {name}", **given) as recorded:
        for line in lines:
            recorded.sample(**line)


SESSIONS = [
    {"store": "memory", "measure": "load", **batches(0.02)}, {"store": "memory", "measure": "save", **batches(0.05)},
    {"store": "memory", "measure": "bytes", "bytes": 195},
    {"store": "redis", "measure": "load", **batches(0.4)}, {"store": "redis", "measure": "save", **batches(0.8)},
    {"store": "redis", "measure": "bytes", "bytes": 195},
]
REDIS_OWN = {"calls": 5, "usec": 101, "usec_per_call": 20.2, "rejected_calls": 0, "failed_calls": 0}
# Per store and size, as micro prints them: the three timed calls, then Redis's own time for a store in Redis.
PRESENCE = [
    *({"store": "memory", "online": online, "measure": measure, **batches(0.01 * online ** 0.5)}
      for online in (10, 1000) for measure in ("heartbeat", "poll", "full_list")),
    *({"store": "redis", "online": online, "measure": measure,
       **(batches(0.5) if measure in ("heartbeat", "poll", "full_list") else {"commandstats": REDIS_OWN})}
      for online in (10, 1000) for measure in ("heartbeat", "poll", "full_list", "heartbeat_server", "poll_server")),
]
POSTS = [{"database": database, "measure": measure, **batches(scale)}
         for database, measure, scale in (("sqlite3", "unlocked", 2), ("sqlite3", "locked", 3),
                                          ("postgresql", "unlocked", 4), ("postgresql", "locked", 5))]
COMMANDS = [
    (sessions, SESSIONS, {"stores": ["memory", "redis"], "repeat": 18}),
    (presence, PRESENCE, {"stores": ["memory", "redis"], "sizes": [10, 1000], "repeat": 18}),
    (posts, POSTS, {"databases": ["sqlite", "postgres"], "repeat": 18}),
]


@pytest.mark.parametrize(("command", "lines", "given"), COMMANDS, ids=[c[0].NAME for c in COMMANDS])
def test_recheck_writes_the_json_the_command_wrote_from_the_same_history(tmp_path, capsys, command, lines, given):
    run, again = tmp_path / "run", tmp_path / "again"
    record(run, command.NAME, lines, **given)
    # What main does once the measurements are recorded.
    own, verdict = command.report(run, page.Run(command.NAME, f"python -m loadtest {command.NAME}"))
    again.mkdir()
    shutil.copy(run / history.FILE, again)
    assert main(["recheck", str(again)]) == 0
    assert verdict is None and f"report: {again / page.REPORT_FILE}" in capsys.readouterr().out
    assert json.loads((again / f"{command.NAME}.json").read_text()) == own
    assert json.loads((run / f"{command.NAME}.json").read_text()) == own
    assert json.loads((again / page.RUN_FILE).read_text())["kind"] == command.NAME


@pytest.mark.parametrize("command", [sessions, presence, posts], ids=lambda command: command.NAME)
def test_recheck_of_a_recorded_run_reproduces_the_json_the_run_wrote_exactly(tmp_path, command):
    recorded = RECORDED / f"{command.NAME}-run"
    shutil.copy(recorded / history.FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((recorded / f"{command.NAME}.json").read_text())
    assert own and json.loads((tmp_path / f"{command.NAME}.json").read_text()) == own


def test_bench_sessions_figures_are_the_median_batch_of_each_store_in_the_order_measured(tmp_path):
    record(tmp_path, sessions.NAME, SESSIONS, stores=["memory", "redis"], repeat=18)
    assert sessions.figures(readings.loaded(tmp_path)) == [
        {"store": "memory", "load_us": 10.0, "save_us": 25.0, "bytes": 195},
        {"store": "redis", "load_us": 200.0, "save_us": 400.0, "bytes": 195}]


def test_bench_presence_figures_give_redis_own_time_only_for_a_store_in_redis(tmp_path):
    record(tmp_path, presence.NAME, PRESENCE, stores=["memory", "redis"], sizes=[10, 1000], repeat=18)
    rows = {(row["store"], row["online"]): row for row in presence.figures(readings.loaded(tmp_path))}
    assert list(rows) == [("memory", 10), ("memory", 1000), ("redis", 10), ("redis", 1000)]
    assert rows[("memory", 1000)]["full_list_us"] == 158.1  # 500 µs x 0.01 x sqrt(1000)
    assert rows[("memory", 10)]["heartbeat_server_us"] is None
    assert rows[("redis", 10)] == {"store": "redis", "online": 10, "heartbeat_us": 250.0, "poll_us": 250.0,
                                   "full_list_us": 250.0, "heartbeat_server_us": 20.2, "poll_server_us": 20.2}


def test_bench_posts_figures_set_the_post_with_the_lock_against_the_one_without(tmp_path):
    record(tmp_path, posts.NAME, POSTS, databases=["sqlite", "postgres"], repeat=18)
    assert posts.figures(readings.loaded(tmp_path)) == [
        {"database": "sqlite3", "before_us": 1000.0, "after_us": 1500.0, "added_us": 500.0, "ratio": 1.5,
         "posts_per_batch": 2},
        {"database": "postgresql", "before_us": 2000.0, "after_us": 2500.0, "added_us": 500.0, "ratio": 1.25,
         "posts_per_batch": 2}]


def test_the_median_batch_is_the_one_micro_times():
    reading = micro.timed(lambda: None, 18)
    assert reading["calls"] == 2 and len(reading["seconds"]) == micro.BATCHES
    middle = sorted(reading["seconds"])[micro.BATCHES // 2]
    assert readings.us(reading) == round(middle / 2 * 1e6, 1)


@pytest.mark.parametrize(("command", "lines", "given"), COMMANDS, ids=[c[0].NAME for c in COMMANDS])
def test_a_history_without_its_parameters_is_refused_by_name(tmp_path, capsys, command, lines, given):
    with history.History(tmp_path / history.FILE, experiment=command.NAME, command="python -m loadtest") as cut:
        for line in lines:
            cut.sample(**line)
    with pytest.raises(ValueError, match="no parameters"):
        command.report(tmp_path, page.Run(command.NAME, "python -m loadtest"))
    assert main(["recheck", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"cannot recheck {tmp_path}" in error
    assert f"has no parameters (the \"started\" sample {command.NAME} records first)" in error
    assert not (tmp_path / f"{command.NAME}.json").exists()


@pytest.mark.parametrize(("argv", "named"), [
    (["bench-sessions", "--stores", "memory,nosuch"], "--stores: no session store nosuch; choose from: memory"),
    (["bench-presence", "--sizes", "10,many"], "--sizes wants numbers online"),
    (["bench-presence", "--repeat", "8"], "--repeat 8: at least 9"),
])
def test_bad_options_are_refused_by_name_before_anything_is_recorded(tmp_path, capsys, argv, named):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("given", "named"), [("sqlite,nosuch", "no database nosuch"), (" , ", "no database named")])
def test_a_bad_databases_list_is_refused_at_argument_parsing_naming_the_option_and_the_choices(tmp_path, capsys,
                                                                                               given, named):
    with pytest.raises(SystemExit) as exited:
        main(["bench-posts", "--databases", given, "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert f"argument --databases: {named}; choose from: sqlite, postgres" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("command", "lines", "given"), COMMANDS, ids=[c[0].NAME for c in COMMANDS])
def test_a_run_that_stopped_part_way_is_refused_naming_what_it_never_measured(tmp_path, command, lines, given):
    record(tmp_path, command.NAME, lines[:len(lines) // 2], **given)  # the first configurations only
    with pytest.raises(ValueError, match="the run stopped before it measured"):
        command.report(tmp_path, page.Run(command.NAME, "python -m loadtest"))
    assert not (tmp_path / f"{command.NAME}.json").exists()
