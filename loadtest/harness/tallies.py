"""Checkers that count: how the tries of one kind of operation ended, and how long they took.

For experiments that make a fixed number of tries of each kind, one after
another (etcd-loss), rather than a load: a try is one operation, numbered
0, 1, ... in the order it was invoked; only "ok" is acknowledged, and an
operation that never completed has no duration (checkers.py's conventions).
"""

from loadtest.harness.checkers import ops


def tries(events, what):
    """The operations of a kind, in the order they were invoked: try 0, 1, ..."""
    return sorted(ops(events, what), key=lambda op: op["invoked"])


def answered(events, what):
    """The numbers of the tries of a kind that were acknowledged."""
    return [n for n, op in enumerate(tries(events, what)) if op["outcome"] == "ok"]


def refused(events, what, refusal):
    """The tries of a kind refused with this refusal (failed, its refusal equal to it)."""
    return [op for op in tries(events, what) if op["outcome"] == "failed" and op["refusal"] == refusal]


def durations_ms(operations):
    """How long each operation that completed took, in ms, in the order given."""
    return [(op["completed"] - op["invoked"]) * 1000 for op in operations if op["completed"] is not None]
