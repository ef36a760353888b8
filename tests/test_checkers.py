"""The harness's checkers, verdict and recheck on small hand-written histories: no cluster, well under a second."""

import json

import pytest

from loadtest.__main__ import main
from loadtest.experiments import split_brain
from loadtest.harness import checkers, history, verdict
from loadtest.reports import page


def op(n, who, what, invoked, completed, outcome="ok", value=None, node="app1", refusal=None):
    return {"type": "op", "id": n, "scenario": "s", "who": who, "what": what, "node": node, "invoked": invoked,
            "completed": completed, "outcome": outcome, "value": value, "refusal": refusal}


def fault(n, effect, ended, action="partition"):
    return {"type": "fault", "id": n, "scenario": "s", "action": action, "target": "redis1", "sent": effect - 0.01,
            "effect": effect, "ended": ended}


# Two users: ann writes 1, 2, 3 and the final read finds 1 (2 and 3, acknowledged around the cut, lost);
# bob's write 1 never completed, his write 2 timed out (unknown), and his final read finds 2: nothing acked is lost.
HISTORY = [
    op(1, "ann", "login", 0.0, 0.1), op(2, "bob", "login", 0.0, 0.1, node="app2"),
    op(3, "ann", "write", 1.0, 1.1, value=1), op(4, "ann", "write", 1.9, 2.0, value=2),
    fault(5, 2.0, 4.0),
    op(6, "ann", "write", 2.1, 2.2, value=3), op(7, "ann", "read", 2.0, 2.05, value=2),
    op(8, "bob", "write", 1.5, None, outcome="unknown", value=1, node="app2"),
    op(9, "bob", "write", 2.5, 5.5, outcome="unknown", value=2, node="app2"),
    op(10, "bob", "heartbeat", 2.6, 2.7, outcome="failed", refusal="503", node="app2"),
    op(11, "ann", "final-read", 6.0, 6.1, value=1, node="haproxy"),
    op(12, "bob", "final-read", 6.0, 6.1, value=2, node="haproxy"),
]


def test_an_acknowledged_write_the_final_read_lacks_is_lost_and_an_unknown_one_is_never_counted():
    assert [(w["who"], w["value"]) for w in checkers.lost_writes(HISTORY)] == [("ann", 2), ("ann", 3)]
    assert checkers.unknown(HISTORY) == 2  # bob's write that never completed counts, whenever asked
    assert checkers.sessions_lost(HISTORY) == []


def test_a_write_acknowledged_after_the_fault_and_a_read_at_its_instant_fall_in_the_window_after_it():
    before, after = checkers.window(HISTORY, 0, 2.0), checkers.window(HISTORY, 2.0, 4.0)
    assert before == {"acknowledged": 1, "lost": 0, "refused": 0}
    assert after == {"acknowledged": 2, "lost": 2, "refused": 1}  # write 2 acked at the instant; write 3
    assert checkers.stale_reads(HISTORY) == []  # the read at the fault's instant saw write 2


def test_a_later_read_lower_than_an_acknowledged_write_shows_it_lost_even_when_a_later_write_hides_it():
    events = [op(1, "ann", "write", 0, 0.1, value=1), op(2, "ann", "read", 0.2, 0.3, value=0),
              op(3, "ann", "write", 0.4, 0.5, value=2), op(4, "ann", "final-read", 1, 1.1, value=2)]
    assert [w["value"] for w in checkers.lost_writes(events)] == [1]
    assert len(checkers.stale_reads(events)) == 1


def test_a_session_gone_loses_the_login_and_every_write_in_it():
    events = [op(1, "ann", "login", 0, 0.1), op(2, "ann", "write", 0.2, 0.3, value=1),
              op(3, "ann", "final-read", 1, 1.1, outcome="failed", refusal="401")]
    assert checkers.sessions_lost(events) == ["ann"]
    assert len(checkers.lost_writes(events)) == 1


@pytest.mark.parametrize("final", [[], [op(3, "ann", "final-read", 1, 1.1, outcome="failed", refusal="503")],
                                   [op(3, "ann", "final-read", 1, None, outcome="unknown")]])
def test_without_a_final_read_that_tells_anything_a_write_and_a_login_are_unconfirmed_never_lost(final):
    events = [op(1, "ann", "login", 0, 0.1), op(2, "ann", "write", 0.2, 0.3, value=1), *final]
    assert (checkers.lost_writes(events), checkers.sessions_lost(events)) == ([], [])
    assert [w["value"] for w in checkers.unconfirmed_writes(events)] == [1]
    assert checkers.sessions_unconfirmed(events) == ["ann"]
    kept = [*events, op(4, "ann", "final-read", 2, 2.1, value=1)]  # a later final read that succeeded
    assert (checkers.unconfirmed_writes(kept), checkers.sessions_unconfirmed(kept)) == ([], [])
    shown = [*events, op(4, "ann", "read", 2, 2.1, value=0)]  # any read that shows it gone: lost, not unconfirmed
    assert ([w["value"] for w in checkers.lost_writes(shown)], checkers.unconfirmed_writes(shown)) == ([1], [])


def test_a_list_read_back_with_a_value_twice_is_a_duplicate_and_without_it_a_loss():
    events = [op(1, "ann", "write", 0, 0.1, value="m1"), op(2, "ann", "write", 0.2, 0.3, value="m2"),
              op(3, "ann", "final-read", 1, 1.1, value=["m1", "m1"])]
    assert [w["value"] for w in checkers.duplicated_writes(events)] == ["m1"]
    assert [w["value"] for w in checkers.lost_writes(events)] == ["m2"]


def test_presence_lost_refusals_by_kind_and_reads_ahead():
    events = [op(1, "ann", "heartbeat", 0, 0.1), op(2, "bob", "heartbeat", 0, 0.1),
              op(3, "ann", "presence-read", 1, 1.1, value=["bob"]),
              op(4, "ann", "write", 1.2, 1.3, value=1), op(5, "ann", "write", 1.4, 3.0, "failed", 2, refusal="503"),
              op(6, "ann", "read", 3.1, 3.2, value=2)]
    assert checkers.presence_lost(events) == ["ann"]
    assert checkers.refusals(events, 0, 3.0) == {"write": 1}
    assert checkers.refusals(events, 0, 2.9) == {}, "a refusal counts when it completed"
    assert checkers.refusals(events, key="refusal") == {"503": 1}
    assert checkers.reads_ahead(events) == {"users": 1, "counter_steps": 1, "unread": 0}


def post(n, who, message, invoked, completed, outcome="ok"):
    return op(n, who, "post", invoked, completed, outcome, value={"room": "r", "id": message})


def poll(n, who, messages, invoked, completed):
    return op(n, who, "poll", invoked, completed, value={"room": "r", "ids": messages})


# ann follows room r from 0.1 to 4.0; the fault takes effect at 2.0. bob's m0 began before ann followed, m1 was
# acknowledged before the fault, m2 after it, at the instant of the fault and of ann's next poll, m3 never completed,
# m4 was acknowledged after ann's last poll began: ann is owed m1 and m2 alone.
POLLS = [
    poll(1, "ann", [], 0.0, 0.1), post(2, "bob", "m0", 0.05, 0.3), post(3, "bob", "m1", 0.5, 0.6),
    poll(4, "ann", ["m0", "m1"], 1.0, 1.1), fault(5, 2.0, 3.0), post(6, "bob", "m2", 1.9, 2.0),
    post(7, "bob", "m3", 2.5, None, outcome="unknown"), poll(8, "ann", ["m2"], 2.0, 2.1),
    poll(9, "ann", [], 4.0, 4.1), post(10, "bob", "m4", 3.9, 4.05),
]


def test_a_poller_owes_what_was_acknowledged_while_it_followed_including_at_the_faults_instant():
    found = checkers.polls_missed_or_seen_twice(POLLS)
    assert found == {"pollers": 1, "owed": 2, "missed": [], "seen_twice": []}


def test_a_message_a_poller_never_received_is_missed_and_one_received_twice_is_seen_twice():
    events = [e for e in POLLS if e["id"] != 8] + [poll(8, "ann", ["m1", "m3"], 2.0, 2.1)]
    found = checkers.polls_missed_or_seen_twice(events)
    assert found["missed"] == [("ann", "r", "m2")], "acknowledged after the fault, never delivered"
    assert found["seen_twice"] == [("ann", "r", "m1")]
    unknown_twice = events + [poll(11, "ann", ["m3"], 4.2, 4.3)]
    assert ("ann", "r", "m3") in checkers.polls_missed_or_seen_twice(unknown_twice)["seen_twice"]


def sent(n, who, message, invoked, completed, outcome="ok"):
    """A post as client.py records it: its client_id always, the id the site gave it once acknowledged."""
    value = {"room": "r", "client_id": f"c{message}"} | ({"id": message} if outcome == "ok" else {})
    return op(n, who, "post", invoked, completed, outcome, value=value)


def read_back(n, messages, invoked, outcome="ok"):
    value = {"room": "r", "messages": [[m, f"c{m}"] for m in messages]} if outcome == "ok" else {"room": "r"}
    return op(n, "auditor", "final-poll", invoked, invoked + 0.5, outcome, value=value, node="haproxy")


# bob's post 1 is read back, post 2 is not (lost), post 3 timed out (unknown: owed by nobody), post 4 was
# acknowledged after the read-back began (it confirms nothing about it), and post 5's id came back with another
# message's client_id (a failover lost it and gave its id to a later one).
POSTS = [sent(1, "bob", 1, 0.0, 0.1), sent(2, "bob", 2, 0.2, 0.3), sent(3, "bob", 3, 0.4, 3.4, "unknown"),
         sent(4, "bob", 4, 0.5, 2.2), sent(5, "bob", 5, 0.6, 0.7)]


def test_an_acknowledged_post_the_read_back_of_its_room_lacks_is_lost_and_an_unknown_one_never_counts():
    held = read_back(6, [1, 3, 4], 2.0)
    held["value"]["messages"].append([5, "c-another"])
    assert [p["value"]["id"] for p in checkers.posts_lost(POSTS + [held])] == [2, 5]  # as they completed
    assert [p["value"]["id"] for p in checkers.posts_unconfirmed(POSTS + [held])] == [4]  # acked after it began
    later = read_back(7, [1, 2, 4, 5], 3.0)
    assert [p["value"]["id"] for p in checkers.posts_lost(POSTS + [held, later])] == [], "one read-back holds each"


def test_a_post_no_successful_read_back_covers_is_unconfirmed_not_lost():
    for history_ in (POSTS, POSTS + [read_back(6, [], 4.0, outcome="failed")]):
        assert (len(checkers.posts_lost(history_)), len(checkers.posts_unconfirmed(history_))) == (0, 4)
    elsewhere = read_back(6, [1, 2, 4, 5], 4.0)
    elsewhere["value"]["room"] = "another"
    assert len(checkers.posts_unconfirmed(POSTS + [elsewhere])) == 4, "a read-back covers its own room only"
    early = read_back(6, [1], 1.5)  # before post 4 was acknowledged: it covers 1, 2 and 5 only
    assert [p["value"]["id"] for p in checkers.posts_lost(POSTS + [early])] == [2, 5]
    assert [p["value"]["id"] for p in checkers.posts_unconfirmed(POSTS + [early])] == [4]


def test_failover_time_runs_from_the_faults_effect_to_the_first_acknowledged_operation_begun_after_it():
    (cut,) = checkers.faults(HISTORY)
    assert checkers.failover_time(HISTORY, cut) == 0.2  # ann's write 3, invoked after the effect
    assert checkers.failover_time(HISTORY, cut, node="app2") is None, "bob got nothing acknowledged after it"


def test_the_timeline_counts_operations_by_the_second_they_completed():
    series = checkers.timeline(HISTORY, {"acked": lambda o: o["what"] == "write" and o["outcome"] == "ok",
                                         "refused": lambda o: o["outcome"] == "failed"})
    assert series == {"acked": [0, 1, 2, 0, 0, 0, 0], "refused": [0, 0, 1, 0, 0, 0, 0]}


def test_a_history_splits_into_its_scenarios_in_the_order_they_first_appear():
    events = [{"scenario": "b", "n": 1}, {"scenario": None, "n": 2}, {"scenario": "a", "n": 3},
              {"scenario": "b", "n": 4}]
    split = history.scenarios(events)
    assert list(split) == ["b", "a"] and [e["n"] for e in split["b"]] == [1, 4]  # events of none left out


def test_the_history_file_is_one_header_then_events_flushed_as_they_happen(tmp_path):
    with history.History(tmp_path / history.FILE, experiment="t", command="c") as recorded:
        recorded.scenario = "s"
        write = recorded.invoke("ann", "write", "app1", value=1)
        cut = recorded.fault("partition", "redis1")
        assert [e["type"] for e in history.read(tmp_path / history.FILE)] == ["header", "fault"], "live"
        recorded.took_effect(cut)
        recorded.complete(write, "ok", keep_value=True)
        recorded.invoke("bob", "write", "app2", value=1)  # never completes
    header, events = history.load(tmp_path / history.FILE)
    assert header["schema"] == history.SCHEMA == 1 and header["experiment"] == "t"
    assert [e["type"] for e in events] == ["fault", "op", "op"] and events[0]["effect"] is not None
    assert events[2]["completed"] is None and events[2]["outcome"] == "unknown"
    with pytest.raises(ValueError, match="outcome"):
        recorded.complete(write, "timeout")


def test_a_deliberately_wrong_hypothesis_does_not_hold():
    figures = {"s": {"total": {"writes_lost": 2}}}
    judged = verdict.judge([verdict.Check("s", "nothing lost", "total.writes_lost", 0, 0),
                            verdict.Check("s", "measured", "total.nothing", 0, None)], figures)
    assert [c["met"] for c in judged["checks"]] == [False, False] and not judged["held"]
    assert verdict.exit_status(judged) != 0
    assert "NOT MET" in verdict.lines(judged)[0] and "not measured" in verdict.lines(judged)[1]


def split_brain_history(path, *, lost_on_minority, final_read_refused=False):
    """A split-brain run of the redis scenario, by hand: one user a side, the minority's cut write lost or not (or
    its final read refused: nothing told)."""
    def sample(at, name, **more):
        return {"type": "sample", "scenario": "redis", "at": at, "condition": name, **more}

    events = [{"type": "header", "schema": 1, "experiment": "split-brain", "command": "python -m loadtest split-brain",
               "started": "2026-12-06T17:00:00.000+00:00"},
              sample(0.0, "started", parameters={"seconds": 1, "users": 1}),
              op(1, "min", "login", 0.1, 0.2), op(2, "maj", "login", 0.1, 0.2, node="app2"),
              op(3, "min", "write", 0.3, 0.4, value=1), op(4, "maj", "write", 0.3, 0.4, value=1, node="app2"),
              fault(5, 1.0, 3.0) | {"ended": None}, sample(1.5, "promoted"), fault(5, 1.0, 3.0),
              op(6, "min", "write", 1.1, 1.2, value=2),
              op(7, "maj", "write", 1.1, 1.3, "failed", 2, node="app2", refusal="503"),
              sample(4.0, "converged"),
              op(8, "min", "final-read", 5.0, 5.1, "failed" if final_read_refused else "ok",
                 value=1 if lost_on_minority else 2, node="haproxy", refusal="503" if final_read_refused else None),
              op(9, "maj", "final-read", 5.0, 5.1, value=1, node="haproxy")]
    path.write_text("".join(json.dumps(e | {"scenario": "redis"} if e["type"] != "header" else e) + "\n"
                            for e in events))


def test_under_patroni_the_cut_off_primary_is_seen_demoted_and_its_side_acknowledges_nothing_after():
    def roles(at, pg1):
        return {"type": "sample", "scenario": "s", "at": at, "roles": {"pg1": pg1, "pg2": "replica", "pg3": "replica"}}

    events = [{"type": "sample", "scenario": "s", "at": 0.0, "condition": "started",
               "parameters": {"seconds": 30, "users": 1}},
              op(1, "min", "login", 0.1, 0.2), op(2, "maj", "login", 0.1, 0.2, node="app2"),
              fault(3, 1.0, 30.0), roles(1.5, "primary"), op(4, "min", "write", 2.0, 2.1, value=1),
              roles(5.0, "down"),  # its Patroni did not answer: no sign it was demoted
              roles(8.0, "stopping"), op(5, "min", "write", 7.5, 8.5, value=2),  # acknowledged after it was seen
              roles(22.0, "replica"),
              op(6, "min", "final-read", 31, 31.1, value=2, node="haproxy"),
              op(7, "maj", "final-read", 31, 31.1, value=None, node="haproxy")]
    result = split_brain.figures(events, "patroni")
    assert (result["demoted_after_s"], result["minority_acked_after_demotion"]) == (7.0, 1)
    judged = verdict.judge(split_brain.HYPOTHESIS, {"patroni": result})
    assert [c["met"] for c in judged["checks"] if "demoted" in c["statement"]] == [True, False]
    before = split_brain.figures([e for e in events if e.get("id") != 5], "patroni")
    assert before["minority_acked_after_demotion"] == 0
    assert split_brain.figures([e for e in events if "roles" not in e], "patroni")["demoted_after_s"] is None


def test_an_etcd_split_holds_only_if_the_cut_took_the_leader_from_the_majority():
    def events(leading):
        def roles(at, leader):
            return {"type": "sample", "scenario": "s", "at": at,
                    "roles": {f"etcd{n}": "leader" if f"etcd{n}" == leader else "follower" for n in (1, 2, 3)}}
        cut = fault(3, 1.0, 5.0) | {"target": {"isolated": ["etcd2", "app1"], "from": ["etcd1", "etcd3", "app2"]}}
        return [{"type": "sample", "scenario": "s", "at": 0.0, "condition": "started",
                 "parameters": {"seconds": 4, "users": 1}},
                op(1, "min", "login", 0.1, 0.2), op(2, "maj", "login", 0.1, 0.2, node="app2"),
                roles(0.9, "etcd2"), cut, roles(1.1, leading),  # the first look once the cut is in place
                op(4, "min", "write", 1.5, 2.0, "failed", 1, refusal="503"),
                roles(2.1, "etcd1"), {"type": "sample", "scenario": "s", "at": 2.1, "condition": "promoted"},
                op(5, "maj", "write", 2.5, 2.6, value=1, node="app2"),
                {"type": "sample", "scenario": "s", "at": 6.0, "condition": "converged"},
                op(6, "min", "final-read", 7, 7.1, value=None, node="haproxy"),
                op(7, "maj", "final-read", 7, 7.1, value=1, node="haproxy")]

    cut_off = split_brain.figures(events("etcd2"), "etcd")
    assert cut_off["cut_off_primary"] and cut_off["total"]["writes_lost"] == 0
    assert verdict.judge(split_brain.HYPOTHESIS, {"etcd": cut_off})["held"]
    moved = split_brain.figures(events("etcd1"), "etcd")  # leadership had moved to the majority by the cut
    judged = verdict.judge(split_brain.HYPOTHESIS, {"etcd": moved})
    assert [c["met"] for c in judged["checks"] if "cut took the primary" in c["statement"]] == [False]
    assert "cut_off_primary" not in split_brain.figures(events("etcd2"), "redis"), "Sentinel's sides are fixed"


def started_roles(chosen):
    """Every node of a scenario's store and the role it has as deploy starts it (etcd: etcd2 elected)."""
    if chosen.shards:
        return {f"redis{n}": "primary" if n <= chosen.shards else "replica" for n in range(1, 2 * chosen.shards + 1)}
    if chosen.store == "etcd":
        return {f"etcd{n}": "leader" if n == 2 else "follower" for n in (1, 2, 3)}
    primary, follower = chosen.roles
    roles = {f"{chosen.prefix}{n}": primary if n == 1 else follower for n in (1, 2, 3)}
    others = "sentinel" if chosen.store == "redis" else "etcd" if chosen.patroni else None
    return roles | ({f"{others}{n}": "up" for n in (1, 2, 3)} if others else {})


@pytest.mark.parametrize("name", split_brain.EVERY_SCENARIO)
def test_each_scenario_cuts_its_primary_off_with_app1_and_promotes_on_the_majority_side(name):
    chosen = split_brain.scenario(name)
    roles = started_roles(chosen)
    minority, majority = chosen.sides(roles)
    assert not set(minority) & set(majority)
    assert set(minority) | set(majority) == {*roles, "app1", "app2"}, "every node on one side"
    primary = next(node for node in minority if roles.get(node) == chosen.roles[0])
    assert primary in (chosen.groups or [roles])[0], "the (first shard's) primary is cut off"
    candidates = chosen.candidates(majority)
    assert candidates and set(candidates) <= set(majority)
    assert all(roles[node] != chosen.roles[0] for node in candidates)
    assert split_brain.converged(chosen, roles)
    assert not split_brain.converged(chosen, roles | {candidates[0]: chosen.roles[0]}), "two primaries"


def run_report(folder):
    split_brain.report(folder, page.Run.of(["split-brain", "--seconds", "1"]))
    return json.loads((folder / "split-brain.json").read_text()), json.loads((folder / "run.json").read_text())


def test_recheck_reproduces_the_figures_and_the_verdict_from_the_history_alone(tmp_path, capsys):
    split_brain_history(tmp_path / history.FILE, lost_on_minority=True)
    figures, record = run_report(tmp_path)
    (result,) = figures["results"]
    assert result["partition_writes"]["minority"] == {"acknowledged": 1, "lost": 1, "refused": 0, "lost_pct": 100.0}
    assert result["refused_by_kind"] == {"minority": {}, "majority": {"write": 1}}
    assert figures["verdict"]["held"] and record["verdict"] == figures["verdict"]
    assert "The hypothesis held." in (tmp_path / "report.html").read_text()
    (tmp_path / "split-brain.json").unlink()
    assert main(["recheck", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "split-brain.json").read_text()) == figures
    assert json.loads((tmp_path / "run.json").read_text()) == record | {"machine": page.machine()}
    assert "hypothesis held" in capsys.readouterr().out


def test_a_run_whose_hypothesis_did_not_hold_exits_non_zero_on_recheck(tmp_path, capsys):
    split_brain_history(tmp_path / history.FILE, lost_on_minority=False)  # asynchronous Redis kept the write?
    figures, record = run_report(tmp_path)
    assert not record["verdict"]["held"]
    assert main(["recheck", str(tmp_path)]) == verdict.exit_status(record["verdict"]) != 0
    assert "NOT MET redis: writes the minority acknowledged" in capsys.readouterr().out
    assert "The hypothesis did NOT hold." in (tmp_path / "report.html").read_text()


def test_recheck_reports_a_run_that_ended_before_its_page_from_the_history_header(tmp_path):
    split_brain_history(tmp_path / history.FILE, lost_on_minority=True)
    assert main(["recheck", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["kind"], record["command"]) == ("split-brain", "python -m loadtest split-brain")
    assert record["started"] == "2026-12-06T17:00:00+00:00" and record["verdict"]["held"]


def test_the_command_exits_non_zero_when_the_stated_hypothesis_is_deliberately_wrong(tmp_path, monkeypatch, capsys):
    split_brain_history(tmp_path / history.FILE, lost_on_minority=True)
    assert main(["recheck", str(tmp_path)]) == 0
    wrong = verdict.Check("redis", "asynchronous Redis keeps every acknowledged write", "total.writes_lost", 0, 0)
    monkeypatch.setattr(split_brain, "HYPOTHESIS", [*split_brain.HYPOTHESIS, wrong])
    assert main(["recheck", str(tmp_path)]) == 3
    assert "NOT MET redis: asynchronous Redis keeps every acknowledged write" in capsys.readouterr().out
    assert not json.loads((tmp_path / "run.json").read_text())["verdict"]["held"]
