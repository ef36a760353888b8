"""The control room's live counters (control/live.py) on hand-written histories: the checkers' conventions, live."""

from control.live import Tally
from control.load import final_figures


def op(who, what, invoked, completed, outcome="ok", value=None, refusal=None, node="app1"):
    return {"type": "op", "id": 0, "scenario": None, "who": who, "what": what, "node": node, "invoked": invoked,
            "completed": completed, "outcome": outcome, "value": value, "refusal": refusal}


def tallied(events, since=0.0):
    tally = Tally()
    tally.restart(since)
    for event in events:
        tally.add(event)
    return tally


# ada's session survives; bob's is gone after his second write: a read refused as gone (401).
HISTORY = [
    op("ada", "login", 0.0, 0.1), op("bob", "login", 0.0, 0.1, node="app2"),
    op("ada", "read", 0.2, 0.3, value=None), op("ada", "write", 0.3, 0.4, value=1),
    op("bob", "write", 0.3, 0.4, value=1, node="app2"), op("bob", "write", 0.5, 0.6, value=2, node="app2"),
    op("ada", "read", 0.7, 0.8, value=1), op("ada", "write", 0.8, 0.9, value=2),
    op("bob", "read", 1.0, 1.1, outcome="failed", refusal="401", value=None),
    op("bob", "write", 1.1, 1.2, outcome="failed", refusal="401", value=3),
]
FINAL = [op("ada", "final-read", 2.0, 2.1, value=2, node="haproxy"),
         op("bob", "final-read", 2.0, 2.1, outcome="failed", refusal="401", node="haproxy")]


def test_a_read_refused_as_gone_loses_the_session_and_every_write_before_it():
    figures = tallied(HISTORY).figures(now=1.2)
    assert figures["sessions_lost"] == 1
    assert figures["writes_acked"] == 4
    assert figures["writes_lost"] == 2  # bob's 1 and 2
    assert figures["failed"] == 2


def test_a_read_that_finds_no_counter_yet_is_no_lost_session():
    assert tallied(HISTORY[:3]).figures(now=0.3)["sessions_lost"] == 0


def test_a_lower_counter_loses_the_writes_above_it_acknowledged_before_the_read():
    events = [op("ada", "login", 0.0, 0.1), op("ada", "write", 0.1, 0.2, value=1),
              op("ada", "write", 0.2, 0.3, value=2), op("ada", "read", 0.35, 0.5, value=1),
              op("ada", "write", 0.4, 0.6, value=3)]  # acknowledged after the read began: not shown lost by it
    assert tallied(events).figures(now=0.6)["writes_lost"] == 1


def test_the_live_tally_agrees_with_the_checkers_once_every_session_was_read_back():
    live = tallied(HISTORY + FINAL).figures(now=2.1)
    final = final_figures(HISTORY + FINAL)
    for key in ("sessions_lost", "writes_acked", "writes_lost"):
        assert live[key] == final[key], key


def test_rates_and_shares_count_the_last_five_seconds_only():
    events = [op("ada", "write", t, t + 0.01, value=n, node=f"app{1 + n % 2}") for n, t in
              enumerate(x / 2 for x in range(20))]
    tally = tallied(events)
    figures = tally.figures(now=10.0)
    assert figures["rps"] == 2.0  # the 10 of the last 5 s
    assert tally.shares() == {"app1": 0.5, "app2": 0.5}


def test_operations_before_the_load_started_do_not_count():
    assert tallied(HISTORY, since=0.75).figures(now=1.2)["writes_acked"] == 1
