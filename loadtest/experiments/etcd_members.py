"""etcd under loss, etcd's own calls with members killed: a fresh cluster per row, recorded as a history.

Every call is an operation of the run's history (history.py), by `who`
(the client; in a partition, the side it asks), served by the member it
was sent to: a write of key n (its value, n: the key's number), a
linearizable read and a serializable read of key 0 (its value, the number
read, or None when the key was not there). A call ends ok, failed (etcd or
the connection refused it: the refusal names etcd3gw's exception) or
unknown (no answer within the client's timeout: the write may have been
applied, as the partition's healed reads show). Each member killed is a
fault. The figures are computed from the history alone (calls_figures).
"""

import shutil
import signal
import tempfile
from pathlib import Path

import etcd3gw.exceptions

from deploy.cluster import etcd, free_port, stop, wait_for
from loadtest.harness import tallies
from loadtest.harness.analysis import percentile
from loadtest.harness.checkers import parameters
from loadtest.harness.history import scenarios
from loadtest.reports.tables import Table

# The columns of the tables and keys of the JSON, and the kind of operation each call is in the history.
CALLS = {"write": "write", "linearizable read": "linearizable-read", "serializable read": "serializable-read"}


def member_losses(*, members=5, tries=20, timeout=0.5, history):
    """What a real majority store still does with k = 0 .. majority of its members killed, into the history.

    For each k, one scenario: a fresh etcd cluster, the leader and then
    other members killed, a wait for a new leader where one can be elected,
    then `tries` writes, linearizable reads (through the leader) and
    serializable reads (any member's local copy), each through the first
    member still alive.
    """
    for gone in range(members // 2 + 2):
        history.scenario = f"{members} members, {gone} killed"
        history.sample(condition="started", parameters={"members": members, "gone": gone})
        state = Path(tempfile.mkdtemp(prefix="etcd-loss-"))
        cluster = []
        try:
            cluster = etcd.start_members(etcd.on_loopback([free_port() for _ in range(members)], state), state)
            victims = sorted(cluster, key=lambda m: m["name"] != etcd.leader(cluster))[:gone]
            survivors = [m for m in cluster if m not in victims]
            # Logged in while a majority runs: a login goes through Raft, and a
            # minority still serves serializable reads to a client that has its token.
            client = connected(survivors[0], timeout)
            for member in victims:
                fault = history.fault("kill", member["name"])
                stop(member, sig=signal.SIGKILL)
                history.took_effect(fault)
            if majority(members, gone):
                wait_for(lambda: etcd.leader(survivors), timeout=30, what="a new etcd leader")
            record_calls(history, client, who="client", node=survivors[0]["name"], tries=tries)
        finally:
            for member in cluster:
                stop(member, sig=signal.SIGKILL)
            shutil.rmtree(state, ignore_errors=True)


def majority(members, gone):
    return members - gone > members // 2


def record_calls(history, client, *, who, node, tries, prefix="quorum"):
    """`tries` calls of each kind (CALLS) through the client of member `node`, one after another, each an
    operation of the history."""
    calls = {
        "write": lambda n: _put(client, f"{prefix}/{n}", n),
        "linearizable-read": lambda n: _number(client.get(f"{prefix}/0")),
        "serializable-read": lambda n: _number(client.get(f"{prefix}/0", serializable=True)),
    }
    for what, call in calls.items():
        for n in range(tries):
            op = history.invoke(who, what, node, n if what == "write" else None)
            try:
                value = call(n)
            except etcd3gw.exceptions.ConnectionTimeoutError:
                history.complete(op, "unknown", keep_value=True)
            except etcd3gw.exceptions.Etcd3Exception as refusal:
                # etcd's own "request timed out" answers after the member proposed the write: it may be applied.
                # etcd3gw keeps etcd's answer in detail_text; str() is only the HTTP reason.
                timed_out = "timed out" in (refusal.detail_text or "")
                history.complete(op, "unknown" if timed_out else "failed",
                                 refusal=None if timed_out else type(refusal).__name__, keep_value=True)
            else:
                history.complete(op, "ok", value=value)


def _put(client, key, n):
    client.put(key, str(n))
    return n


def _number(values):
    """The number a read of one key found (etcd3gw gives its value as bytes), or None when the key was not there."""
    return int(values[0]) if values else None


def calls_figures(events):
    """Each kind of call's figures, from a scenario's events: acknowledged, tried, the median time of every
    try (answered or not, ms), and which tries were acknowledged."""
    figures = {}
    for name, what in CALLS.items():
        done = tallies.tries(events, what)
        figures[name] = {"ok": sum(op["outcome"] == "ok" for op in done), "tries": len(done),
                         "p50_ms": rounded_ms(percentile(tallies.durations_ms(done), 0.5)),
                         "answered": tallies.answered(events, what)}
    return figures


def member_rows(events):
    """The members mode's rows (its JSON), one per scenario, from the history alone."""
    rows = []
    for mine in scenarios(events).values():
        given = parameters(mine)
        rows.append({"members": given["members"], "gone": given["gone"],
                     "majority": majority(given["members"], given["gone"]), **calls_figures(mine)})
    return rows


def connected(member, timeout):
    """A member's client with the site's certificate, that has answered once."""
    client = etcd.client(member, timeout)
    client.status()
    return client


def member_table(rows):
    return Table.of([f"members killed (of {rows[0]['members']})", "majority left", "writes", "linearizable reads",
                     "serializable reads"],
                    [[f"{r['gone']}" + (" (the leader)" if r["gone"] == 1 else ""), "yes" if r["majority"] else "no",
                      *call_cells(r)] for r in rows])


def call_cells(figures):
    """'ok/tries ok, median ms' for each kind of call."""
    return [f"{figures[k]['ok']}/{figures[k]['tries']} ok, {figures[k]['p50_ms']:g} ms" for k in CALLS]


def rounded_ms(value):
    """Milliseconds to one decimal; None stays None (nothing was measured)."""
    return None if value is None else round(value, 1)
