"""The quorum exhibit over real Redis nodes: overlapping quorums read no stale value, others do."""

import pytest

from deploy.cluster import alive
from loadtest.experiments.quorum_model import Nodes, Shape, miss_chance, run_load


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


def load(group, shape, seconds):
    client = group.client(shape)
    try:
        return run_load(client, seconds=seconds)
    finally:
        client.close()


@pytest.mark.parametrize("gone", [0, 1, 2])
def test_overlapping_quorums_read_nothing_stale_while_enough_nodes_live(nodes, gone):
    shape = Shape(5, 3, 3)
    assert gone <= shape.tolerated
    group = nodes(5)
    for index in range(gone):
        group.take_down(index, "kill")
    tally = load(group, shape, seconds=1.5)
    assert tally.reads > 100 and tally.writes > 10
    assert (tally.stale_reads, tally.failed_reads, tally.failed_writes) == (0, 0, 0)


def test_too_many_nodes_gone_and_the_quorum_cannot_be_formed(nodes):
    shape = Shape(5, 3, 3)
    group = nodes(5)
    for index in range(shape.tolerated + 1):
        group.take_down(index, "kill")
    tally = load(group, shape, seconds=0.5)
    assert (tally.reads, tally.writes) == (0, 0)
    assert tally.failed_reads > 0 and tally.failed_writes > 0


def test_quorums_that_need_not_overlap_read_stale_values(nodes):
    shape = Shape(7, 3, 3)
    assert miss_chance(shape, 0) == pytest.approx(4 / 35)
    group = nodes(7)
    stale = reads = 0
    for _ in range(10):  # bounded: about 10 % of reads are stale, so one round almost always shows it
        tally = load(group, shape, seconds=1)
        stale, reads = stale + tally.stale_reads, reads + tally.reads
        if stale:
            break
    assert stale > 0, f"no stale read in {reads} reads: the exhibit cannot show what R + W <= N allows"


def test_nodes_at_a_distance_make_each_quorum_wait_for_its_farthest_member(nodes):
    group = nodes(3, distances=(1, 4, 20))
    assert group.distances == [1, 4, 20]
    tally = load(group, Shape(3, 3, 3), seconds=1.5)
    assert tally.reads > 5 and tally.writes > 5 and tally.stale_reads == 0
    # Every read and write waits for all three, so for the node 20 ms away each way: 40 ms at least.
    assert 40 <= sorted(tally.read_ms)[0] and 40 <= sorted(tally.write_ms)[0]
    assert sorted(tally.read_ms)[len(tally.read_ms) // 2] < 40 * 1.5 + 10  # and not absurdly more
    group.stop_all()
    assert group.relay is not None and not alive(group.relay["pid"])
