"""The socket checkers (loadtest/harness/socket_checkers.py) on hand-written histories of a few events."""

import json

from loadtest.experiments import sockets
from loadtest.harness import socket_checkers as check
from loadtest.reports import page

LEAVERS = {"type": "sample", "at": 0, "condition": "started", "parameters": {"leavers": ["leo"]}}


def op(who, what, at, value=None, outcome="ok", node="app1"):
    return {"type": "op", "who": who, "what": what, "node": node, "invoked": at, "completed": at,
            "outcome": outcome, "value": value, "refusal": None}


def connect(who, at, node="app1"):
    return op(who, "connect", at, {"after": None, "node": node})


def post(who, at, message):
    return {**op(who, "post", at, {"client_id": f"c{message}", "id": message}), "completed": at + 0.1}


def receive(who, at, message, prev, held=True, connection=1):
    return op(who, "receive", at, {"id": message, "prev": prev, "author": "x", "client_id": f"c{message}",
                                   "held": held, "connection": connection})


def drop(who, at, code=1006, by="server"):
    return op(who, "disconnect", at, {"code": code, "by": by})


def test_a_message_a_member_never_held_is_undelivered_and_one_held_twice_is_a_duplicate():
    events = [connect("ann", 0), connect("bob", 0), post("ann", 1, 1), post("ann", 2, 2),
              receive("ann", 1.2, 1, None), receive("ann", 2.2, 2, 1), receive("bob", 1.2, 1, None),
              receive("bob", 2.2, 2, 1), receive("bob", 2.3, 2, 1)]
    assert check.undelivered(events) == []
    assert check.delivered_twice(events) == [(2, "bob")]
    events = events[:-2]  # bob never got message 2
    assert check.undelivered(events) == [(2, "bob")]
    assert check.delivered_twice(events) == []


def test_a_message_got_again_after_a_resume_but_not_held_is_no_duplicate():
    events = [connect("bob", 0), post("ann", 1, 1), post("ann", 2, 2), receive("bob", 2.2, 2, 1, held=False),
              drop("bob", 2.3, code=1000, by="client"), connect("bob", 2.4),
              receive("bob", 2.5, 1, None, connection=2), receive("bob", 2.5, 2, 1, connection=2)]
    assert check.delivered_twice(events) == [] and check.undelivered(events) == []
    assert check.figures(events)["resumes"] == 1 and check.figures(events)["dropped"] == 0


def test_members_who_never_got_each_other_s_messages_split_the_room():
    events = [connect("ann", 0, "app1"), connect("bob", 0, "app2"), post("ann", 1, 1), post("bob", 2, 2),
              receive("ann", 1.2, 1, None), receive("bob", 2.2, 2, 1)]
    assert check.room_split(events) == [("ann", "bob"), ("bob", "ann")]
    assert check.room_split(events + [receive("bob", 3, 1, None, connection=2)]) == [("bob", "ann")]


def test_reconnect_times_go_from_each_drop_to_the_next_open_socket():
    events = [LEAVERS, connect("ann", 0), connect("bob", 0), connect("leo", 0), drop("ann", 5, 1001),
              connect("ann", 5.3), drop("bob", 5, 1001), drop("leo", 5, 1001), connect("bob", 6)]
    assert check.reconnect_times(events) == [0.3, 1.0]  # the leaver is no member: not counted
    figures = check.figures(events)
    assert (figures["dropped"], figures["going_away_pct"], figures["reconnect_p50"], figures["reconnect_p99"]) == (
        3, 100.0, 0.3, 1.0)
    assert check.reconnect_times([connect("ann", 0), drop("ann", 1)]) == [None]


def test_a_leaver_shown_online_after_its_socket_dropped_is_a_ghost_until_the_list_drops_it():
    shown = [op("ann", "presence-read", 1, ["ann", "leo"]), op("ann", "presence-read", 12.5, ["ann"])]
    events = [LEAVERS, connect("ann", 0), connect("leo", 0), *shown, drop("leo", 2)]
    assert check.ghost_seconds(events) == {"leo": 10.5}
    # Nobody was shown the leaver (the in-memory layer on another instance): no ghost.
    assert check.ghost_seconds([LEAVERS, connect("ann", 0), op("ann", "presence-read", 1, ["ann"]),
                                drop("leo", 2)]) == {"leo": 0.0}
    # Still listed when the history ends: a ghost until then.
    assert check.ghost_seconds([LEAVERS, *shown[:1], drop("leo", 2), op("ann", "presence-read", 20, ["ann", "leo"])
                                ]) == {"leo": 18.0}


def test_a_drop_never_followed_by_a_socket_counts_as_never_reconnected_and_in_no_percentile():
    events = [connect("ann", 0), connect("bob", 0), connect("cat", 0), drop("ann", 5), connect("ann", 5.2),
              drop("bob", 5), connect("bob", 7), drop("cat", 5)]
    figures = check.figures(events)
    assert (figures["reconnect_p50"], figures["reconnect_p99"], figures["never_reconnected"]) == (0.2, 2.0, 1)
    assert check.figures([connect("ann", 0), drop("ann", 1)])["reconnect_p50"] is None


def test_the_sockets_report_judges_a_hand_written_history_and_writes_its_page(tmp_path):
    """The report `recheck` reruns: figures, the verdict (a message never held breaks the resume check), the page."""
    header = {"type": "header", "schema": 1, "experiment": "sockets", "command": "python -m loadtest sockets",
              "started": "2026-12-06T20:00:00.000+00:00"}
    events = [{**LEAVERS, "parameters": {"leavers": ["leo"]}}, connect("ann", 0), connect("bob", 0),
              connect("leo", 0), drop("leo", 1, 1001), post("ann", 1, 1), post("ann", 2, 2),
              receive("ann", 1.2, 1, None), receive("ann", 2.2, 2, 1), receive("bob", 1.2, 1, None),
              drop("bob", 1.5, 1001), connect("bob", 1.6)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in [
        header, *({**event, "scenario": "term-redis"} for event in events)]))
    results, judged = sockets.report(tmp_path, page.Run("sockets", "python -m loadtest sockets"))
    assert results[0]["undelivered_messages"] == 1 and results[0]["going_away_pct"] == 100.0
    unmet = [check["figure"] for check in judged["checks"] if not check["met"]]
    assert unmet == ["undelivered_messages"] and not judged["held"]
    assert (tmp_path / "report.html").exists() and (tmp_path / "sockets-term-redis.svg").exists()
