"""The quorum exhibit over real Redis nodes: overlapping quorums read nothing stale, others do; a run rechecks."""

import json

import pytest

from deploy.cluster import alive
from loadtest.__main__ import main
from loadtest.experiments import quorum
from loadtest.experiments.quorum_model import Nodes, Shape, miss_chance, run_load
from loadtest.harness import checkers, history


@pytest.fixture
def nodes(tmp_path):
    started = []

    def start(count, distances=()):
        group = Nodes(count, tmp_path, distances)
        started.append(group)
        group.start_all()
        return group

    yield start
    for group in started:
        group.stop_all()


def load(group, shape, seconds, folder, gone=0):
    """Run the load into a fresh history in folder; return its events and their figures (quorum.figures)."""
    path = folder / f"{shape.n}-{shape.r}-{shape.w}-{len(list(folder.glob('*.jsonl')))}.jsonl"
    client = group.client(shape)
    try:
        with history.History(path, experiment="quorum", command="test", digits=6) as recorded:
            recorded.sample(condition="started", parameters={"n": shape.n, "r": shape.r, "w": shape.w, "gone": gone,
                                                             "distances_ms": group.distances})
            run_load(client, seconds=seconds, history=recorded)
    finally:
        client.close()
    events = history.load(path)[1]
    return events, quorum.figures(events)


@pytest.mark.parametrize("gone", [0, 1, 2])
def test_overlapping_quorums_read_nothing_stale_while_enough_nodes_live(nodes, gone, tmp_path):
    shape = Shape(5, 3, 3)
    assert gone <= shape.tolerated
    group = nodes(5)
    for index in range(gone):
        group.take_down(index, "kill")
    _, row = load(group, shape, 1.5, tmp_path, gone)
    assert row["reads"] > 100 and row["writes"] > 10
    assert (row["stale_reads"], row["failed_reads"], row["failed_writes"]) == (0, 0, 0)


def test_too_many_nodes_gone_and_the_quorum_cannot_be_formed(nodes, tmp_path):
    shape = Shape(5, 3, 3)
    group = nodes(5)
    for index in range(shape.tolerated + 1):
        group.take_down(index, "kill")
    _, row = load(group, shape, 0.5, tmp_path, shape.tolerated + 1)
    assert (row["reads"], row["writes"]) == (0, 0)
    assert row["failed_reads"] > 0 and row["failed_writes"] > 0


def test_quorums_that_need_not_overlap_read_stale_values(nodes, tmp_path):
    shape = Shape(7, 3, 3)
    assert miss_chance(shape, 0) == pytest.approx(4 / 35)
    group = nodes(7)
    stale = reads = 0
    for _ in range(10):  # bounded: about 10 % of reads are stale, so one round almost always shows it
        _, row = load(group, shape, 1, tmp_path)
        stale, reads = stale + row["stale_reads"], reads + row["reads"]
        if stale:
            break
    assert stale > 0, f"no stale read in {reads} reads: the exhibit cannot show what R + W <= N allows"


def test_nodes_at_a_distance_make_each_quorum_wait_for_its_farthest_member(nodes, tmp_path):
    group = nodes(3, distances=(1, 4, 20))
    assert group.distances == [1, 4, 20]
    events, row = load(group, Shape(3, 3, 3), 1.5, tmp_path)
    assert row["reads"] > 5 and row["writes"] > 5 and row["stale_reads"] == 0
    read_ms, write_ms = sorted(checkers.latencies_ms(events, "read")), checkers.latencies_ms(events, "write")
    # Every read and write waits for all three, so for the node 20 ms away each way: 40 ms at least.
    assert 40 <= read_ms[0] and 40 <= min(write_ms)
    assert read_ms[len(read_ms) // 2] < 40 * 1.5 + 10  # and not absurdly more
    group.stop_all()
    assert group.relay is not None and not alive(group.relay["pid"])


def test_a_read_is_stale_only_behind_a_version_acknowledged_before_it_began():
    def op(n, what, invoked, completed, value, outcome="ok"):
        return {"type": "op", "id": n, "who": what[0], "what": what, "invoked": invoked, "completed": completed,
                "outcome": outcome, "value": value}

    events = [op(1, "write", 0.0, 1.0, [10, "w0"]), op(2, "read", 1.0, 1.5, [0, ""]),  # began as the ack came: stale
              op(3, "read", 0.999, 1.2, [0, ""]),  # began before the ack: not stale
              op(4, "write", 1.1, 1.3, None, "unknown"), op(5, "read", 2.0, 2.1, [10, "w0"]),
              op(6, "write", 2.0, 2.2, [10, "w1"]), op(7, "read", 2.2, 2.3, [10, "w0"])]  # same counter, lower writer
    assert [read["id"] for read in checkers.stale_versions(events)] == [2, 7]


def test_recheck_reproduces_a_recorded_quorum_run(tmp_path, capsys):
    out = tmp_path / "quorum"
    assert main(["quorum", "--shapes", "3/2/2", "--seconds", "0.5", "--out", str(out)]) == 0
    recorded, record = json.loads((out / "quorum.json").read_text()), json.loads((out / "run.json").read_text())
    assert [row["gone"] for row in recorded["rows"]] == [0, 1, 2, 3] and record["verdict"]["held"]
    # 0 or 1 gone: no stale read; 2 gone: reads and writes all fail; 3 gone: both checks again.
    assert len(record["verdict"]["checks"]) == 1 + 1 + 2 + 2
    assert len(checkers.faults(history.load(out / history.FILE)[1], "kill")) == 0 + 1 + 2 + 3
    (out / "quorum.json").unlink()
    assert main(["recheck", str(out)]) == 0
    assert json.loads((out / "quorum.json").read_text()) == recorded
    assert json.loads((out / "run.json").read_text())["verdict"] == record["verdict"]
