"""etcd under loss, etcd's own calls: members killed (a fresh cluster per row), or a 2 | 3 split between members."""

import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import etcd3gw.exceptions

from deploy.cluster import etcd, free_port, netns, stop, wait_for
from loadtest.harness.analysis import percentile
from loadtest.reports.tables import Table


def member_losses(*, members=5, tries=20, timeout=0.5):
    """What a real majority store still does with k = 0 .. majority of its members killed.

    For each k: a fresh etcd cluster, the leader and then other members
    killed, a wait for a new leader where one can be elected, then `tries`
    writes, linearizable reads (through the leader) and serializable reads
    (any member's local copy), each through the first member still alive.
    """
    rows = []
    for gone in range(members // 2 + 2):
        state = Path(tempfile.mkdtemp(prefix="etcd-loss-"))
        cluster = []
        try:
            cluster = etcd.start_members(etcd.on_loopback([free_port() for _ in range(members)], state), state)
            victims = sorted(cluster, key=lambda m: m["name"] != etcd.leader(cluster))[:gone]
            survivors = [m for m in cluster if m not in victims]
            # Logged in while a majority runs: a login goes through Raft, and a
            # minority still serves serializable reads to a client that has its token.
            client = _client(survivors[0], timeout)
            for member in victims:
                stop(member, sig=signal.SIGKILL)
            majority = len(survivors) > members // 2
            if majority:
                wait_for(lambda: etcd.leader(survivors), timeout=30, what="a new etcd leader")
            rows.append({"members": members, "gone": gone, "majority": majority,
                         **_etcd_calls(client, tries)})
        finally:
            for member in cluster:
                stop(member, sig=signal.SIGKILL)
            shutil.rmtree(state, ignore_errors=True)
    return rows


def _etcd_calls(client, tries, prefix="quorum"):
    """tries writes (keys prefix/0..), linearizable reads and serializable reads: how many answered, how fast."""
    calls = {
        "write": lambda n: client.put(f"{prefix}/{n}", "v"),
        "linearizable read": lambda n: client.get(f"{prefix}/0"),
        "serializable read": lambda n: client.get(f"{prefix}/0", serializable=True),
    }
    figures = {}
    for name, call in calls.items():
        answered, ms = [], []
        for n in range(tries):
            started = time.perf_counter()
            try:
                call(n)
                answered.append(n)
            except etcd3gw.exceptions.Etcd3Exception:
                pass
            ms.append((time.perf_counter() - started) * 1000)
        figures[name] = {"ok": len(answered), "tries": tries, "p50_ms": rounded_ms(percentile(ms, 0.5)),
                         "answered": answered}
    return figures


def member_table(rows):
    return Table.of([f"members killed (of {rows[0]['members']})", "majority left", "writes", "linearizable reads",
                     "serializable reads"],
                    [[f"{r['gone']}" + (" (the leader)" if r["gone"] == 1 else ""), "yes" if r["majority"] else "no",
                      *(f"{r[k]['ok']}/{r[k]['tries']} ok, {r[k]['p50_ms']:g} ms"
                        for k in ("write", "linearizable read", "serializable read"))] for r in rows])


# A partition between the members


def partition_splits(*, members=5, tries=20, timeout=0.5):
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
    return [_split(members=members, tries=tries, timeout=timeout, leader_side=side) for side in ("small", "large")]


def _split(*, members, tries, timeout, leader_side):
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
        clients = {side: _client(member, timeout) for side, member in asked.items()}

        cut = time.monotonic()
        netns.partition(network, small, [m["name"] for m in sides["large"]])
        new_leader = wait_for(lambda: etcd.leader(sides["large"]), timeout=30, what="a leader on the large side")
        elected_s = time.monotonic() - cut
        wait_for(lambda: etcd.leader(sides["small"]) is None, timeout=30, what="no leader on the small side")
        leaderless_s = time.monotonic() - cut
        during = {side: {"members": [m["name"] for m in group], "roles": [etcd.role(m) for m in group],
                         "asked": asked[side]["name"], **_etcd_calls(clients[side], tries, prefix=side)}
                  for side, group in sides.items()}

        netns.heal(network)
        healed = time.monotonic()
        after_leader = wait_for(lambda: _one_leader(cluster), timeout=30, what="every member to follow one leader")
        rejoined_s = time.monotonic() - healed
        reader = _client(sides["small"][0], timeout=5)  # a member of the small side, read through the leader
        found = {side: sorted(int(meta["key"].decode().rpartition("/")[2])
                              for _, meta in reader.get_prefix(f"{side}/")) for side in sides}
        return {"members": members, "leader_side": leader_side, "old_leader": old_leader,
                "new_leader": new_leader, "leader_elected_s": round(elected_s, 2),
                "small_side_leaderless_s": round(leaderless_s, 2), "during": during,
                "rejoined_s": round(rejoined_s, 2), "leader_after_heal": after_leader,
                "found_after_heal": found}
    finally:
        for member in cluster:
            stop(member, sig=signal.SIGKILL)
        netns.destroy(prefix)
        shutil.rmtree(state, ignore_errors=True)


CLIENT_PORT, PEER_PORT = 2379, 2380  # etcd's own: each member has a namespace, and an address, of its own


def _client(member, timeout):
    """A member's client with the site's certificate, that has answered once."""
    client = etcd.client(member, timeout)
    client.status()
    return client


def _one_leader(cluster):
    """The leader's name if every member names the same one, else None."""
    seen = [etcd.status(m) for m in cluster]
    leaders = {s["leader"] for s in seen if s}
    if len(leaders) != 1 or None in leaders or not all(seen):
        return None
    return next(m["name"] for m, s in zip(cluster, seen) if s["member"] == s["leader"])


def split_table(splits):
    """The table, and its footnote."""
    rows = []
    for split in splits:
        for side, seen in split["during"].items():
            members = ", ".join(f"{n}{'*' if n == seen['asked'] else ''} ({r})"
                                for n, r in zip(seen["members"], seen["roles"]))
            cells = [f"{seen[k]['ok']}/{seen[k]['tries']} ok, {seen[k]['p50_ms']:g} ms"
                     for k in ("write", "linearizable read", "serializable read")]
            acknowledged, found = set(seen["write"]["answered"]), set(split["found_after_heal"][side])
            rows.append([f"{split['old_leader']}, on the {split['leader_side']} side", f"{side}: {members}", *cells,
                         f"{len(acknowledged & found)} of {len(acknowledged)}",
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


def rounded_ms(value):
    """Milliseconds to one decimal; None stays None (nothing was measured)."""
    return None if value is None else round(value, 1)
