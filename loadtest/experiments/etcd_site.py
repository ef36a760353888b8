"""etcd under loss, through the site: logins, session reads and writes while members are killed, the leader first."""

import json
import time

from deploy import cluster as deploy
from deploy.cluster import Topology, free_base_port, wait_for
from loadtest.experiments.etcd_members import rounded_ms
from loadtest.harness.accounts import prepare
from loadtest.harness.analysis import percentile
from loadtest.harness.site import COUNTER, LOGIN, Site, login_form
from loadtest.reports.tables import Table

# Cheap password hashing, as the load test has it: the figures are the store's, not PBKDF2's.
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}


def _served(answer):
    """[answer] if it is not a 503, else None: the store is still out (a list: a Response of 4xx is false)."""
    return [answer] if answer.status_code != 503 else None


def _timed(call, expected):
    started = time.perf_counter()
    answer = call()
    ms = (time.perf_counter() - started) * 1000
    status = answer.status_code
    return {"ok": status == expected, "ms": ms, "etcd_503": status == 503 and b"etcd" in answer.content,
            "status": status, "body": answer.content}


def _tally(results):
    ok = [r["ms"] for r in results if r["ok"]]
    refused = [r["ms"] for r in results if r["etcd_503"]]
    return {"tries": len(results), "ok": len(ok), "ok_p50_ms": rounded_ms(percentile(ok, 0.5)),
            "etcd_503": len(refused), "etcd_503_p50_ms": rounded_ms(percentile(refused, 0.5)),
            "etcd_503_max_ms": rounded_ms(max(refused, default=None)),
            "other": sorted({r["status"] for r in results if not r["ok"] and not r["etcd_503"]})}


class _SiteRun:
    """The users of one run and what was acknowledged to them."""

    def __init__(self, url, tries, rows, state_dir):
        self.url = url
        names = prepare(tries * (rows + 1), state_dir=state_dir)
        self.writers = [Site(url).logged_in(name) for name in names[:tries]]
        # A user per login: a login that fails counts against its user (accounts/throttle.py).
        self.logins = [names[tries * (row + 1):tries * (row + 2)] for row in range(rows)]
        self.acknowledged = [None] * tries  # the last counter acknowledged to each writer
        self.counter = 0

    def row(self, number):
        stale = 0

        def read(i):
            nonlocal stale
            result = _timed(lambda: self.writers[i].request("GET", COUNTER), 200)
            counter = json.loads(result["body"])["counter"] if result["ok"] else None
            if result["ok"] and self.acknowledged[i] is not None and (counter or 0) < self.acknowledged[i]:
                stale += 1
            return result

        def write(i):
            self.counter += 1
            counter = self.counter
            result = _timed(lambda: self.writers[i].api("POST", COUNTER, counter=counter), 200)
            if result["ok"]:
                self.acknowledged[i] = counter
            return result

        def log_in(i):
            visitor = Site(self.url)
            visitor.request("GET", LOGIN)
            return _timed(lambda: visitor.request("POST", LOGIN, form=login_form(self.logins[number][i])), 302)

        tries = range(len(self.writers))
        return {"login": _tally([log_in(i) for i in tries]),
                "session read": {**_tally([read(i) for i in tries]), "stale": stale},
                "session write": _tally([write(i) for i in tries])}

    def lost(self):
        """Writers whose counter reads back older than the last one acknowledged to them (or not at all).

        Each read is repeated until served: an instance's breaker may still
        be open from the outage (labcore/stores.py) for a moment.
        """
        lost = 0
        for visitor, acknowledged in zip(self.writers, self.acknowledged):
            (answer,) = wait_for(lambda v=visitor: _served(v.request("GET", COUNTER)), timeout=30,
                                 what="a session read to be served")
            counter = answer.json()["counter"]
            if acknowledged is not None and (counter or 0) < acknowledged:
                lost += 1
        return lost


def site_losses(*, members=5, tries=10, state_dir, port=None):
    """The deployed site with k = 0 .. majority of its etcd members killed, the leader first; see the module."""
    up = deploy.up(instances=2, sessions="etcd", presence="redis", port=port or free_base_port(), env=SITE_ENV,
                   topology=Topology(etcd_members=members), state_dir=state_dir)
    try:
        run = _SiteRun(up.url, tries, rows=members // 2 + 2, state_dir=state_dir)
        rows, killed, recovery = [], [], None
        for gone in range(members // 2 + 2):
            if gone == 1:
                killed.append(deploy.kill("etcd:leader", state_dir=state_dir))
                recovery = _until_served(run.writers[0])
            elif gone:
                follower = next(r["name"] for r in _etcd_rows(state_dir) if r["role"] == "follower")
                killed.append(deploy.kill(follower, state_dir=state_dir))
            majority = members - gone > members // 2
            if majority:
                wait_for(lambda: any(r["role"] == "leader" for r in _etcd_rows(state_dir)), timeout=30,
                         what="an etcd leader")
            rows.append({"members": members, "gone": gone, "killed": list(killed), "majority": majority,
                         **run.row(gone)})
        for name in killed:
            deploy.start(name, state_dir=state_dir)
        wait_for(lambda: run.writers[0].request("GET", COUNTER).status_code == 200, timeout=30,
                 what="the site serving again with every member back")
        return {"rows": rows, "leader_loss": recovery, "lost_after_restart": run.lost(),
                "acknowledged_writes": sum(r["session write"]["ok"] for r in rows), "writers": tries}
    finally:
        deploy.down(state_dir)


def _etcd_rows(state_dir):
    return [r for r in deploy.status(state_dir)["stores"] if r["kind"] == "etcd"]


def _until_served(visitor, deadline=30):
    """After the leader's kill: session reads back to back until one is served; how long, and what failed."""
    started = time.monotonic()
    failures = []
    while time.monotonic() - started < deadline:
        result = _timed(lambda: visitor.request("GET", COUNTER), 200)
        if result["ok"]:
            return {"served_after_s": round(time.monotonic() - started, 2), "failed": len(failures),
                    "failed_etcd_503": sum(r["etcd_503"] for r in failures),
                    "failed_max_ms": rounded_ms(max((r["ms"] for r in failures), default=None))}
        failures.append(result)
    raise RuntimeError(f"the site served no session read within {deadline} s of the leader's kill")


def site_table(report):
    rows = report["rows"]
    cells = []
    for r in rows:
        these = [_site_cell(r[k]) for k in ("login", "session read", "session write")]
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
    return "; ".join(parts)
