"""loadtest/harness/tallies.py on a hand-written history: no cluster, well under a second."""

from loadtest.harness import tallies


def op(n, invoked, completed, outcome="ok", refusal=None, what="write"):
    return {"type": "op", "id": n, "scenario": "s", "who": "client", "what": what, "node": "etcd1",
            "invoked": invoked, "completed": completed, "outcome": outcome, "value": n, "refusal": refusal}


# Four writes, listed out of the order they were invoked: try 0 acknowledged, try 1 timed out (unknown, though it
# completed after try 2 began; it carries a refusal so that refused() is seen to filter on the outcome), try 2
# refused, try 3 never completed; and a read, another kind.
HISTORY = [
    op(3, 0.3, 0.35, "failed", "InternalServerError"), op(1, 0.0, 0.01), op(4, 0.4, None, "unknown"),
    op(2, 0.1, 0.6, "unknown", "InternalServerError"), op(5, 0.5, 0.502, what="linearizable-read"),
]


def test_tries_are_numbered_in_the_order_invoked_and_only_an_acknowledged_one_is_answered():
    assert [op["id"] for op in tallies.tries(HISTORY, "write")] == [1, 2, 3, 4]
    assert tallies.answered(HISTORY, "write") == [0]
    assert tallies.answered(HISTORY, "linearizable-read") == [0]


def test_an_unknown_try_is_never_counted_as_refused():
    assert [op["id"] for op in tallies.refused(HISTORY, "write", "InternalServerError")] == [3]
    assert tallies.refused(HISTORY, "write", "ConnectionTimeoutError") == []


def test_durations_leave_out_an_operation_that_never_completed():
    durations = tallies.durations_ms(tallies.tries(HISTORY, "write"))
    assert [round(ms, 6) for ms in durations] == [10.0, 500.0, 50.0]
