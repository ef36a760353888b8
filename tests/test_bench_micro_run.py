"""Real `bench-sessions`, `bench-presence` and `bench-posts` runs, tiny (18 calls a measurement, one or two
configurations, private servers on free ports): each fresh process's readings land in history.jsonl as raw
samples after the parameters, and `recheck` writes the same JSON from that history alone."""

import json
import shutil

import pytest

from loadtest.__main__ import main
from loadtest.bench import posts, presence, sessions
from loadtest.harness import history
from loadtest.reports import page

RUNS = [
    # (command, its options, the samples' (configuration, measure) in the order measured)
    (sessions, ["--stores", "memory,redis"],
     [(store, measure) for store in ("memory", "redis") for measure in ("load", "save", "bytes")]),
    (presence, ["--sizes", "10"],
     [(("memory", 10), measure) for measure in ("heartbeat", "poll", "full_list")]
     + [(("redis", 10), measure) for measure in ("heartbeat", "poll", "full_list", "heartbeat_server", "poll_server")]),
    (posts, ["--databases", "sqlite"], [("sqlite3", "unlocked"), ("sqlite3", "locked")]),
]


def configuration(sample):
    if "online" in sample:
        return sample["store"], sample["online"]
    return sample.get("store") or sample["database"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("command", "options", "samples"), RUNS, ids=[run[0].NAME for run in RUNS])
def test_a_real_run_saves_its_raw_readings_and_recheck_writes_the_same_json(tmp_path, capsys, command, options,
                                                                              samples):
    run, again = tmp_path / "run", tmp_path / "again"
    assert main([command.NAME, *options, "--repeat", "18", "--out", str(run)]) == 0
    own = json.loads((run / f"{command.NAME}.json").read_text())
    header, events = history.load(run / history.FILE)
    assert header["experiment"] == command.NAME and events[0]["parameters"]["repeat"] == 18
    measured = [event for event in events if "measure" in event]
    assert [(configuration(event), event["measure"]) for event in measured] == samples
    assert all(len(event["seconds"]) == 9 for event in measured if "seconds" in event)
    assert len(own) == len({configuration(event) for event in measured})
    again.mkdir()
    shutil.copy(run / history.FILE, again)
    assert main(["recheck", str(again)]) == 0
    assert json.loads((again / f"{command.NAME}.json").read_text()) == own
    assert (run / page.REPORT_FILE).exists() and "figures: " in capsys.readouterr().out
