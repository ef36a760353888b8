"""etcd under loss, a 2 | 3 split between members in network namespaces, recorded as a history.

Each split is one scenario: its "started" sample names the sides, the
leader before the cut and the member asked on each side; the cut and the
heal are faults; when the large side had a leader, when the small side had
none and when every member followed one leader again are conditions; each
side's roles during the split a sample; each side's calls operations by
`who` the side (etcd_members.record_calls); the keys each side's prefix
holds after healing a "final-read" of that side. The figures are computed
from the history alone (split_figures).
"""

import secrets
import shutil
import signal
import tempfile
from pathlib import Path

from deploy.cluster import etcd, netns, stop, wait_for
from loadtest.experiments.etcd_members import call_cells, calls_figures, connected, record_calls
from loadtest.harness.checkers import condition, faults, final_reads, parameters
from loadtest.harness.history import scenarios
from loadtest.reports.tables import Table

CLIENT_PORT, PEER_PORT = 2379, 2380  # etcd's own: each member has a namespace, and an address, of its own
LEADER_ELECTED, SMALL_LEADERLESS, ONE_LEADER = ("a leader on the large side", "no leader on the small side",
                                                "every member follows one leader")


def partition_splits(*, members=5, tries=20, timeout=0.5, history):
    """A 2 | 3 split of a fresh cluster, twice: the leader on the small side, then on the large side.

    Each member runs in a network namespace of its own (deploy/netns.py);
    the cut drops packets between the two sides, silently, while this
    process (the clients' side, in the root namespace) still reaches every
    member. During the split: how long until the large side has a leader
    and the small side has none, then etcd's calls through a member of each
    side. After healing: how long until every member follows one leader, and
    whether every write each side acknowledged (and nothing else) is there.
    """
    reason = netns.available()
    if reason:
        raise RuntimeError(f"the partition needs network namespaces: {reason}")
    for side in ("small", "large"):
        _split(members=members, tries=tries, timeout=timeout, leader_side=side, history=history)


def _split(*, members, tries, timeout, leader_side, history):
    history.scenario = f"the leader on the {leader_side} side"
    state = Path(tempfile.mkdtemp(prefix="etcd-split-"))
    prefix = netns.prefix_for(state)
    cluster = []
    try:
        network = netns.create(prefix, secrets.randbelow(256), [f"etcd{n}" for n in range(1, members + 1)])
        planned = etcd.plan([((network.address(name), CLIENT_PORT), (network.address(name), PEER_PORT))
                             for name in network.nodes], state)
        for member in planned:
            member["exec"] = network.exec_prefix(member["name"])
        cluster = etcd.start_members(planned, state)
        old_leader = etcd.leader(cluster)
        followers = [m["name"] for m in cluster if m["name"] != old_leader]
        small = [old_leader, followers[0]] if leader_side == "small" else followers[:members // 2]
        sides = {"small": [m for m in cluster if m["name"] in small],
                 "large": [m for m in cluster if m["name"] not in small]}
        # Each side is asked through a member that was a follower before the cut, whose client
        # answered once before it.
        asked = {side: next(m for m in group if m["name"] != old_leader) for side, group in sides.items()}
        clients = {side: connected(member, timeout) for side, member in asked.items()}
        history.sample(condition="started", parameters={
            "members": members, "leader_side": leader_side, "old_leader": old_leader,
            "sides": {side: [m["name"] for m in group] for side, group in sides.items()},
            "asked": {side: member["name"] for side, member in asked.items()}})

        cut = history.fault("partition", {"isolated": small, "from": [m["name"] for m in sides["large"]]})
        netns.partition(network, small, [m["name"] for m in sides["large"]])
        history.took_effect(cut)
        history.sample(condition=LEADER_ELECTED, leader=wait_for(lambda: etcd.leader(sides["large"]), timeout=30,
                                                                  what="a leader on the large side"))
        wait_for(lambda: etcd.leader(sides["small"]) is None, timeout=30, what="no leader on the small side")
        history.sample(condition=SMALL_LEADERLESS)
        for side, group in sides.items():
            history.sample(side=side, roles={m["name"]: etcd.role(m) for m in group})
            record_calls(history, clients[side], who=side, node=asked[side]["name"], tries=tries, prefix=side)

        heal = history.fault("heal", None)
        netns.heal(network)
        history.took_effect(heal)
        history.ended(cut)
        history.sample(condition=ONE_LEADER, leader=wait_for(lambda: _one_leader(cluster), timeout=30,
                                                              what="every member to follow one leader"))
        reader = connected(sides["small"][0], timeout=5)  # a member of the small side, read through the leader
        for side in sides:
            op = history.invoke(side, "final-read", sides["small"][0]["name"])
            history.complete(op, "ok", value=sorted(int(meta["key"].decode().rpartition("/")[2])
                                                    for _, meta in reader.get_prefix(f"{side}/")))
    finally:
        for member in cluster:
            stop(member, sig=signal.SIGKILL)
        netns.destroy(prefix)
        shutil.rmtree(state, ignore_errors=True)


def _one_leader(cluster):
    """The leader's name if every member names the same one, else None."""
    seen = [etcd.status(m) for m in cluster]
    leaders = {s["leader"] for s in seen if s}
    if len(leaders) != 1 or None in leaders or not all(seen):
        return None
    return next(m["name"] for m, s in zip(cluster, seen) if s["member"] == s["leader"])


def split_figures(events):
    """One split's figures (its JSON), from its scenario's events alone."""
    given = parameters(events)
    (cut,), (heal,) = faults(events, "partition"), faults(events, "heal")
    roles = {e["side"]: e["roles"] for e in events if e["type"] == "sample" and "roles" in e}
    during = {side: {"members": names, "roles": [roles[side][name] for name in names], "asked": given["asked"][side],
                     **calls_figures([e for e in events if e["type"] != "op" or e["who"] == side])}
              for side, names in given["sides"].items()}
    found = final_reads(events)
    return {"members": given["members"], "leader_side": given["leader_side"], "old_leader": given["old_leader"],
            "new_leader": _observed(events, LEADER_ELECTED)["leader"],
            "leader_elected_s": round(condition(events, LEADER_ELECTED) - cut["sent"], 2),
            "small_side_leaderless_s": round(condition(events, SMALL_LEADERLESS) - cut["sent"], 2),
            "during": during, "rejoined_s": round(condition(events, ONE_LEADER) - heal["effect"], 2),
            "leader_after_heal": _observed(events, ONE_LEADER)["leader"],
            "found_after_heal": {side: found[side] for side in during}}


def _observed(events, name):
    return next(e for e in events if e["type"] == "sample" and e.get("condition") == name)


def split_rows(events):
    """The partition mode's splits (its JSON), one per scenario."""
    return [split_figures(mine) for mine in scenarios(events).values()]


def split_table(splits):
    """The table, and its footnote."""
    rows = []
    for split in splits:
        for side, seen in split["during"].items():
            members = ", ".join(f"{n}{'*' if n == seen['asked'] else ''} ({r})"
                                for n, r in zip(seen["members"], seen["roles"]))
            acknowledged, found = set(seen["write"]["answered"]), set(split["found_after_heal"][side])
            rows.append([f"{split['old_leader']}, on the {split['leader_side']} side", f"{side}: {members}",
                         *call_cells(seen), f"{len(acknowledged & found)} of {len(acknowledged)}",
                         f"{len(found - acknowledged)} of {seen['write']['tries'] - len(acknowledged)}"])
    header = ["leader before the cut", "side: members (role during the split)", "writes", "linearizable reads",
              "serializable reads", "after healing: acknowledged writes found", "unacknowledged writes found"]
    return [Table.of(header, rows), "* the member asked (a follower before the cut)"]


def split_timings(splits):
    return list(
        f"leader on the {s['leader_side']} side ({s['old_leader']}): the large side elected {s['new_leader']} "
        f"{s['leader_elected_s']} s after the cut; the small side had no leader after "
        f"{s['small_side_leaderless_s']} s; "
        f"healed, every member followed {s['leader_after_heal']} {s['rejoined_s']} s later"
        for s in splits)
