"""`python -m loadtest etcd-loss` (loadtest/experiments/etcd_loss.py): each mode's figures from a hand-written
history, recheck of recorded runs, and a small run of the members mode against real etcd members.

The fixtures are what small real runs saved (`python -m loadtest etcd-loss --mode MODE --members 3 --tries 3`;
the partition's with `--members 5 --tries 2`, since a 2 | 3 split needs five): their history.jsonl and MODE.json,
as the run wrote them.
"""

import json
import shutil
from pathlib import Path

import etcd3gw
import pytest

from loadtest.__main__ import main
from loadtest.experiments import etcd_members, etcd_site, etcd_split
from loadtest.harness import history

FIXTURES = Path(__file__).parent / "fixtures"


def op(n, scenario, who, what, invoked, completed, outcome="ok", value=None, refusal=None, node="app1"):
    return {"type": "op", "id": n, "scenario": scenario, "who": who, "what": what, "node": node, "invoked": invoked,
            "completed": completed, "outcome": outcome, "value": value, "refusal": refusal}


def started(scenario, **parameters):
    return {"type": "sample", "scenario": scenario, "at": 0.0, "condition": "started", "parameters": parameters}


def fault(n, scenario, action, target, sent, effect):
    return {"type": "fault", "id": n, "scenario": scenario, "action": action, "target": target, "sent": sent,
            "effect": effect, "ended": None}


R0, R1, R2, AFTER = "3 members, 0 killed", "3 members, 1 killed", "3 members, 2 killed", etcd_site.RESTARTED
ETCD = etcd_site.ETCD_REFUSED
# Two writers, ann and bob, and a user per login. Row 0: bob's write times out (unknown). Row 1: etcd1, the
# leader, killed; a probe refused, the next served. Row 2: no majority; ann's read sees 1 though 3 was acknowledged
# to her (stale); a login refused by HAProxy (a bare 503). After the restarts ann's read-back is refused once, then
# finds 3; bob's finds no counter: his acknowledged 4 is lost.
SITE = [
    started(None, mode="site", members=3, tries=2),
    started(R0, members=3, gone=0),
    op(1, R0, "u1", "login", 0.1, 0.2), op(2, R0, "u2", "login", 0.2, 0.3),
    op(3, R0, "ann", "read", 0.3, 0.31), op(4, R0, "bob", "read", 0.31, 0.32),
    op(5, R0, "ann", "write", 0.4, 0.42, value=1), op(6, R0, "bob", "write", 0.42, 3.42, "unknown", value=2),
    started(R1, members=3, gone=1),
    fault(7, R1, "kill", "etcd1", 4.0, 4.1),
    op(8, R1, "ann", "probe", 4.2, 4.7, "failed", refusal=ETCD), op(9, R1, "ann", "probe", 4.7, 4.81, value=1),
    op(10, R1, "u3", "login", 5.0, 5.1), op(11, R1, "u4", "login", 5.1, 5.2),
    op(12, R1, "ann", "read", 5.2, 5.21, value=1), op(13, R1, "bob", "read", 5.21, 5.22),
    op(14, R1, "ann", "write", 5.3, 5.32, value=3), op(15, R1, "bob", "write", 5.32, 5.34, value=4),
    started(R2, members=3, gone=2),
    fault(16, R2, "kill", "etcd2", 6.0, 6.1),
    op(17, R2, "u5", "login", 7.0, 7.5, "failed", refusal=ETCD),
    op(18, R2, "u6", "login", 7.5, 7.51, "failed", refusal="503"),
    op(19, R2, "ann", "read", 7.6, 7.61, value=1), op(20, R2, "bob", "read", 7.61, 7.62, "failed", refusal=ETCD),
    op(21, R2, "ann", "write", 7.7, 7.71, "failed", refusal=ETCD, value=5),
    op(22, R2, "bob", "write", 7.71, 10.71, "unknown", value=6),
    fault(23, AFTER, "start", "etcd1", 11.0, 11.5), fault(24, AFTER, "start", "etcd2", 11.5, 12.0),
    op(25, AFTER, "ann", "final-read", 12.1, 12.2, "failed", refusal=ETCD),
    op(26, AFTER, "ann", "final-read", 12.2, 12.21, value=3), op(27, AFTER, "bob", "final-read", 12.21, 12.22),
]



class Answering:
    """An etcd client whose every call gets one answer of etcd's, raised as etcd3gw raises it."""

    def __init__(self, detail):
        self.detail = detail

    def put(self, key, value):
        raise etcd3gw.exceptions.ConnectionFailedError(self.detail, "Service Unavailable")

    def get(self, key, serializable=False):
        return self.put(key, None)


def test_etcds_own_timeout_leaves_a_write_unknown_and_a_refusal_failed(tmp_path):
    """etcd answers "request timed out" after the member proposed the write: it may be applied, so unknown."""
    for detail, outcome, refusal in (('{"error":"etcdserver: request timed out","code":14}', "unknown", None),
                                     ('{"error":"etcdserver: no leader","code":14}', "failed",
                                      "ConnectionFailedError")):
        path = tmp_path / f"{outcome}.jsonl"
        with history.History(path, experiment="etcd-loss", command="test") as recorded:
            etcd_members.record_calls(recorded, Answering(detail), who="client", node="etcd1", tries=1)
        _, events = history.load(path)
        writes = [(op["outcome"], op["refusal"]) for op in events if op["type"] == "op" and op["what"] == "write"]
        assert writes == [(outcome, refusal)]

def test_site_figures_count_stale_reads_in_their_row_and_writes_the_read_back_lacks():
    figures = etcd_site.site_figures(SITE)
    rows = figures["rows"]
    assert [r["killed"] for r in rows] == [[], ["etcd1"], ["etcd1", "etcd2"]]
    assert [r["majority"] for r in rows] == [True, True, False]
    assert [r["session read"]["stale"] for r in rows] == [0, 0, 1]
    assert (figures["lost_after_restart"], figures["unconfirmed_writes"]) == (1, 0)  # bob's 4; ann's 3 found
    assert (figures["acknowledged_writes"], figures["writers"]) == (3, 2)  # an unknown write is not acknowledged


def test_site_figures_tell_a_503_naming_etcd_from_haproxys_and_never_count_an_unknown_one_as_refused():
    row = etcd_site.site_figures(SITE)["rows"][2]
    logins, writes = row["login"], row["session write"]
    assert (logins["ok"], logins["tries"], logins["etcd_503"], logins["other"]) == (0, 2, 1, [503])
    assert (logins["etcd_503_p50_ms"], logins["etcd_503_max_ms"]) == (500.0, 500.0)
    assert (writes["etcd_503"], writes["unknown"], writes["other"]) == (1, 1, [])


def test_the_first_read_served_after_the_leaders_kill_is_timed_from_the_kills_effect():
    assert etcd_site.site_figures(SITE)["leader_loss"] == {"served_after_s": 0.71, "failed": 1,
                                                          "failed_etcd_503": 1, "failed_max_ms": 500.0}


def test_members_rows_count_each_kind_of_call_and_say_whether_a_majority_was_left():
    scenario = "3 members, 2 killed"
    events = [started(scenario, members=3, gone=2),
              op(1, scenario, "client", "write", 0.0, 0.5, "unknown", value=0),
              op(2, scenario, "client", "write", 0.5, 0.51, "failed", value=1, refusal="ConnectionFailedError"),
              op(3, scenario, "client", "serializable-read", 0.6, 0.602, value=0)]
    (row,) = etcd_members.member_rows(events)
    assert (row["gone"], row["majority"]) == (2, False)
    assert row["write"] == {"ok": 0, "tries": 2, "p50_ms": 10.0, "answered": []}
    assert row["serializable read"]["answered"] == [0] and row["linearizable read"]["tries"] == 0


def test_a_split_is_timed_from_the_cut_and_the_heal_and_keeps_what_each_side_holds_after_it():
    s = "the leader on the small side"
    events = [
        started(s, members=3, leader_side="small", old_leader="etcd1",
                sides={"small": ["etcd1"], "large": ["etcd2", "etcd3"]}, asked={"small": "etcd1", "large": "etcd2"}),
        fault(1, s, "partition", {"isolated": ["etcd1"], "from": ["etcd2", "etcd3"]}, 1.0, 1.01),
        {"type": "sample", "scenario": s, "at": 2.5, "condition": etcd_split.LEADER_ELECTED, "leader": "etcd2"},
        {"type": "sample", "scenario": s, "at": 3.0, "condition": etcd_split.SMALL_LEADERLESS},
        {"type": "sample", "scenario": s, "at": 3.1, "side": "small", "roles": {"etcd1": "candidate"}},
        op(2, s, "small", "write", 3.2, 3.7, "unknown", value=0),
        {"type": "sample", "scenario": s, "at": 3.8, "side": "large", "roles": {"etcd2": "leader",
                                                                               "etcd3": "follower"}},
        op(3, s, "large", "write", 3.9, 3.91, value=0),
        fault(4, s, "heal", None, 4.0, 4.2),
        {"type": "sample", "scenario": s, "at": 5.0, "condition": etcd_split.ONE_LEADER, "leader": "etcd3"},
        op(5, s, "small", "final-read", 5.1, 5.2, value=[0]), op(6, s, "large", "final-read", 5.2, 5.3, value=[0]),
    ]
    split = etcd_split.split_figures(events)
    assert (split["leader_elected_s"], split["small_side_leaderless_s"], split["rejoined_s"]) == (1.5, 2.0, 0.8)
    assert (split["new_leader"], split["leader_after_heal"]) == ("etcd2", "etcd3")
    assert split["during"]["large"]["roles"] == ["leader", "follower"]
    assert split["during"]["small"]["write"]["answered"] == [] and split["found_after_heal"]["small"] == [0]


@pytest.mark.parametrize("mode", ["members", "site", "partition"])
def test_recheck_of_a_recorded_run_reproduces_its_figures_exactly(tmp_path, capsys, mode):
    recorded = FIXTURES / f"etcd-loss-{mode}"
    shutil.copy(recorded / history.FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((recorded / f"{mode}.json").read_text())
    assert json.loads((tmp_path / f"{mode}.json").read_text()) == own
    assert "report: " in capsys.readouterr().out


def test_a_small_members_run_shows_writes_refused_without_a_majority_and_recheck_agrees(tmp_path):
    assert main(["etcd-loss", "--members", "3", "--tries", "2", "--out", str(tmp_path / "run")]) == 0
    rows = json.loads((tmp_path / "run" / "members.json").read_text())
    assert [(r["gone"], r["majority"]) for r in rows] == [(0, True), (1, True), (2, False)]
    assert [r["write"]["ok"] for r in rows] == [2, 2, 0]
    assert rows[2]["serializable read"]["ok"] == 2  # a member's own copy still answers
    assert main(["recheck", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "members.json").read_text()) == rows
