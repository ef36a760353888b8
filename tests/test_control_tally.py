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


def posted(who, message, invoked, completed, outcome="ok"):
    value = {"room": "r", "client_id": f"c{message}"} | ({"id": message} if outcome == "ok" else {})
    return op(who, "post", invoked, completed, outcome, value=value)


def polled(who, messages, invoked, completed):
    return op(who, "poll", invoked, completed, value={"room": "r", "ids": messages})


# ada posts 1, 2 and 3 (acknowledged) and 4 (timed out); bob polls and sees 1 twice and never 2; the room's
# read-back holds 1 and 3 (2 lost) and 4 (its post unknown: neither acknowledged nor lost).
MESSAGES = [
    polled("bob", [], 0.0, 0.1), posted("ada", 1, 0.2, 0.3), posted("ada", 2, 0.4, 0.5),
    polled("bob", [1], 0.6, 0.7), polled("bob", [1], 0.8, 0.9), posted("ada", 3, 1.0, 1.1),
    posted("ada", 4, 1.2, 4.2, outcome="unknown"), polled("bob", [3], 1.3, 1.4),
]
READ_BACK = op("lab auditor", "final-poll", 2.2, 2.4, node="haproxy",
               value={"room": "r", "messages": [[1, "c1"], [3, "c3"], [4, "c4"]]})


def test_acknowledged_posts_count_as_writes_and_those_the_read_back_lacks_as_lost():
    running = tallied(HISTORY + MESSAGES).figures(now=2.0)
    assert running["writes_acked"] == 4 + 3 and running["writes_lost"] == 2, "posts are settled by the read-back"
    assert running["messages_missed"] is None and running["messages_seen_twice"] is None
    live = tallied(HISTORY + MESSAGES + FINAL + [READ_BACK]).figures(now=2.5)
    final = final_figures(HISTORY + MESSAGES + FINAL + [READ_BACK])
    assert final["writes_acked"] == live["writes_acked"] == 4 + 3
    assert final["writes_lost"] == live["writes_lost"] == 2 + 1
    assert (final["messages_missed"], final["messages_seen_twice"]) == (1, 1)


def test_a_read_back_that_failed_leaves_its_posts_unconfirmed_never_lost():
    failed = {**READ_BACK, "outcome": "failed", "refusal": "503", "value": {"room": "r"}}
    live = tallied(MESSAGES + [failed]).figures(now=2.5)
    final = final_figures(MESSAGES + [failed])
    assert live["writes_lost"] == final["writes_lost"] == 0
    assert live["writes_unconfirmed"] is None and final["writes_unconfirmed"] == 3


def test_rates_and_shares_count_the_last_five_seconds_only():
    events = [op("ada", "write", t, t + 0.01, value=n, node=f"app{1 + n % 2}") for n, t in
              enumerate(x / 2 for x in range(20))]
    tally = tallied(events)
    figures = tally.figures(now=10.0)
    assert figures["rps"] == 2.0  # the 10 of the last 5 s
    assert tally.shares() == {"app1": 0.5, "app2": 0.5}


def test_operations_before_the_load_started_do_not_count():
    assert tallied(HISTORY, since=0.75).figures(now=1.2)["writes_acked"] == 1
