"""etcd under loss, through the site: logins, session reads and writes while members are killed, the leader first.

Every request is an operation of the run's history (history.py), served
through HAProxy (its node: the instance's X-Served-By): a login (302 ok),
a session read ("read", its value the counter read) and a session write
("write", its value the counter written), each failed with its status as
the refusal (`503 etcd`: a 503 whose body names etcd, the store error
labcore/stores.py answers with; a bare 503 is HAProxy's, with no instance
to send to) or unknown (no answer within OPERATION_TIMEOUT). After the
leader's kill, session reads back to back until one is served ("probe");
after the killed members are started again, every writer's counter read
back ("final-read", repeated while it is a 503 or unknown). One scenario
per row; the restarts and the read-back in a scenario of their own. Each
member killed or started is a fault sent through the nemesis (deploy's
fault vocabulary, seen to take effect). The figures are computed from the
history alone (site_figures).
"""

import time

import requests

from deploy import cluster as deploy
from deploy.cluster import Topology, free_base_port, wait_for
from loadtest.experiments.etcd_members import majority, rounded_ms
from loadtest.harness import checkers, tallies
from loadtest.harness.accounts import prepare
from loadtest.harness.analysis import percentile
from loadtest.harness.history import scenarios
from loadtest.harness.nemesis import Nemesis
from loadtest.harness.site import COUNTER, LOGIN, OPERATION_TIMEOUT, Site, login_form
from loadtest.reports.tables import Table

# Cheap password hashing, as the load test has it: the figures are the store's, not PBKDF2's.
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}
ETCD_REFUSED = "503 etcd"
RESTARTED = "killed members started again"
KINDS = {"login": "login", "session read": "read", "session write": "write"}  # the table's columns: kinds of op


class _Users:
    """The users of one run, each request an operation of the history."""

    def __init__(self, history, url, tries, rows, state_dir):
        self.history, self.url = history, url
        names = prepare(tries * (rows + 1), state_dir=state_dir)
        self.writers = [(name, Site(url).logged_in(name)) for name in names[:tries]]
        for _, visitor in self.writers:
            visitor.timeout = OPERATION_TIMEOUT  # logged in with the set-up's timeout; from now on operations
        # A user per login: a login that fails counts against its user (accounts/throttle.py).
        self.logins = [names[tries * (row + 1):tries * (row + 2)] for row in range(rows)]
        self.counter = 0  # the last counter written, to any writer: each write sets the next

    def row(self, number):
        """Each kind in turn, a try per writer: logins (each by a user of its own), session reads, session writes."""
        for name in self.logins[number]:
            visitor = Site(self.url, timeout=OPERATION_TIMEOUT)
            visitor.request("GET", LOGIN)  # its CSRF cookie
            self._op(name, "login", lambda v=visitor, n=name: v.request("POST", LOGIN, form=login_form(n)), 302)
        for i in range(len(self.writers)):
            self.read(i)
        for name, visitor in self.writers:
            self.counter += 1
            self._op(name, "write", lambda v=visitor, c=self.counter: v.api("POST", COUNTER, counter=c), 200,
                     value=self.counter)

    def read(self, i, what="read"):
        name, visitor = self.writers[i]
        return self._op(name, what, lambda: visitor.request("GET", COUNTER), 200,
                        read=lambda answer: answer.json().get("counter"))

    def until_served(self, deadline=30):
        """Session reads back to back ("probe") until one is served."""
        started = time.monotonic()
        while time.monotonic() - started < deadline:
            if self.read(0, "probe")["outcome"] == "ok":
                return
        raise RuntimeError(f"the site served no session read within {deadline} s of the leader's kill")

    def read_back(self):
        """Every writer's counter, each read repeated until it is neither a 503 nor unknown: an instance's breaker
        may still be open from the outage (labcore/stores.py) for a moment."""
        for i in range(len(self.writers)):
            wait_for(lambda i=i: _served(self.read(i, "final-read")), timeout=30, what="a session read to be served")

    def _op(self, who, what, send, expected, *, value=None, read=None):
        """Send one request as an operation; the operation as recorded."""
        op = self.history.invoke(who, what, "haproxy", value)
        try:
            answer = send()
        except requests.RequestException:
            return self.history.complete(op, "unknown", keep_value=True)
        node = answer.headers.get("X-Served-By")
        if answer.status_code != expected:
            refusal = ETCD_REFUSED if answer.status_code == 503 and b"etcd" in answer.content \
                else str(answer.status_code)
            return self.history.complete(op, "failed", refusal=refusal, keep_value=True, node=node)
        return self.history.complete(op, "ok", value=read(answer) if read else value, node=node)


def _served(op):
    """The operation, unless it is a 503 or unknown: the store, or the instance's breaker, still out."""
    return None if op["outcome"] == "unknown" or (op["refusal"] or "").startswith("503") else op


def site_losses(*, members=5, tries=10, state_dir, history, port=None):
    """The deployed site with k = 0 .. majority of its etcd members killed, the leader first, into the history;
    see the module."""
    up = deploy.up(instances=2, sessions="etcd", presence="redis", port=port or free_base_port(), env=SITE_ENV,
                   topology=Topology(etcd_members=members), state_dir=state_dir)
    try:
        users = _Users(history, up.url, tries, rows=members // 2 + 2, state_dir=state_dir)
        nemesis = Nemesis(history, state_dir=state_dir)
        killed = []
        for gone in range(members // 2 + 2):
            history.scenario = f"{members} members, {gone} killed"
            history.sample(condition="started", parameters={"members": members, "gone": gone})
            if gone == 1:
                killed.append(_acted(nemesis, "kill", "etcd:leader"))
                users.until_served()
            elif gone:
                killed.append(_acted(nemesis, "kill", next(r["name"] for r in _etcd_rows(state_dir)
                                                           if r["role"] == "follower")))
            if majority(members, gone):
                wait_for(lambda: any(r["role"] == "leader" for r in _etcd_rows(state_dir)), timeout=30,
                         what="an etcd leader")
            users.row(gone)
        history.scenario = RESTARTED
        for name in killed:
            _acted(nemesis, "start", name)
        users.read_back()
    finally:
        deploy.down(state_dir)


def _acted(nemesis, action, target):
    """The node `action` reached, once seen to take effect; RuntimeError if it never did: a row labelled
    with members killed that were not would be a wrong figure."""
    event = nemesis.act(action, target)
    if event["effect"] is None:
        raise RuntimeError(f"{action} {target} was refused or never took effect: see the history's samples")
    return event["target"]


def _etcd_rows(state_dir):
    return [r for r in deploy.status(state_dir)["stores"] if r["kind"] == "etcd"]


def site_figures(events):
    """The site mode's figures (its JSON), from the history alone: a row per scenario with a number of members
    killed (its stale reads: checkers.stale_reads), the first read served after the leader's kill, and the
    acknowledged writes that the read-back after the restarts lacks (checkers.lost_writes, judged by the final
    reads alone: a stale read is counted in its row; of users, each counted once) or did not confirm."""
    stale = {op["id"] for op in checkers.stale_reads(events)}
    rows, killed = [], []
    for mine in scenarios(events).values():
        given = checkers.parameters(mine)
        if "gone" not in given:
            continue
        killed += [f["target"] for f in checkers.faults(mine, "kill")]
        tally = {name: _tally(mine, what) for name, what in KINDS.items()}
        tally["session read"]["stale"] = sum(op["id"] in stale for op in checkers.ops(mine, "read"))
        rows.append({"members": given["members"], "gone": given["gone"], "killed": list(killed),
                     "majority": majority(given["members"], given["gone"]), **tally})
    leader_row = next(mine for mine in scenarios(events).values() if checkers.parameters(mine).get("gone") == 1)
    read_back = [e for e in events if e["type"] != "op" or e["what"] != "read"]
    return {"rows": rows, "leader_loss": _leader_loss(leader_row),
            "lost_after_restart": len({op["who"] for op in checkers.lost_writes(read_back)}),
            "unconfirmed_writes": len(checkers.unconfirmed_writes(read_back)),
            "acknowledged_writes": len(checkers.ops(events, "write", "ok")),
            "writers": checkers.parameters(events)["tries"]}


def _tally(events, what):
    done = tallies.tries(events, what)
    ok = tallies.durations_ms([op for op in done if op["outcome"] == "ok"])
    refused = tallies.durations_ms(tallies.refused(events, what, ETCD_REFUSED))
    return {"tries": len(done), "ok": len(ok), "ok_p50_ms": rounded_ms(percentile(ok, 0.5)),
            "etcd_503": len(refused), "etcd_503_p50_ms": rounded_ms(percentile(refused, 0.5)),
            "etcd_503_max_ms": rounded_ms(max(refused, default=None)),
            "other": sorted({int(op["refusal"]) for op in done
                             if op["outcome"] == "failed" and op["refusal"] != ETCD_REFUSED}),
            "unknown": sum(op["outcome"] == "unknown" for op in done)}


def _leader_loss(events):
    """From the leader's kill's effect: when the first probe was served, and the probes that failed before it."""
    (fault,) = checkers.faults(events, "kill")
    failed = [op for op in checkers.ops(events, "probe") if op["outcome"] != "ok"]
    served = checkers.failover_time(events, fault, what=("probe",))
    return {"served_after_s": None if served is None else round(served, 2), "failed": len(failed),
            "failed_etcd_503": sum(op["refusal"] == ETCD_REFUSED for op in failed),
            "failed_max_ms": rounded_ms(max(tallies.durations_ms(failed), default=None))}


def site_table(report):
    rows = report["rows"]
    cells = []
    for r in rows:
        these = [_site_cell(r[k]) for k in KINDS]
        if r["session read"]["stale"]:
            these[1] += f", {r['session read']['stale']} stale"
        cells.append([f"{r['gone']}" + (" (the leader)" if r["gone"] == 1 else ""), "yes" if r["majority"] else "no",
                      *these])
    return Table.of([f"members killed (of {rows[0]['members']})", "majority left", "logins", "session reads",
                     "session writes"], cells)


def _site_cell(t):
    parts = [f"{t['ok']}/{t['tries']} ok" + (f", {t['ok_p50_ms']:g} ms" if t["ok"] else "")]
    if t["etcd_503"]:
        parts.append(f"{t['etcd_503']} × 503 naming etcd, {t['etcd_503_p50_ms']:g} ms (max {t['etcd_503_max_ms']:g})")
    if t["other"]:
        parts.append(f"other answers: {', '.join(map(str, t['other']))}")
    if t.get("unknown"):
        parts.append(f"{t['unknown']} unknown (no answer within {OPERATION_TIMEOUT} s)")
    return "; ".join(parts)
