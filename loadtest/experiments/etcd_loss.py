"""etcd under loss: what a 5-member majority store still does with members killed, or cut off.

`python -m loadtest etcd-loss --mode`:

- `members` (the default): a fresh etcd cluster per row, the leader and
  then other members killed, and etcd's own calls through a member still
  alive: writes, linearizable reads (through the leader) and serializable
  reads (the member's local copy).
- `site`: the deployed site (`deploy up --sessions etcd`), over HTTP
  through HAProxy, as users see it. One cluster; members are killed one at
  a time, the leader first; per row, logins, session reads and session
  writes, each by a different user, one request at a time. A read is stale
  if it returns an older counter than the last write acknowledged to that
  user. At the end the killed members are started again and every user's
  counter is read back: an acknowledged write that is not there is lost.
- `partition`: a 2 | 3 split between members, each in a network namespace
  of its own (deploy/netns.py); see `partition_splits`.
"""

import json
import secrets
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import etcd3gw.exceptions

from deploy import cluster as deploy
from deploy.cluster import Topology, etcd, free_base_port, free_port, netns, stop, wait_for
from loadtest.harness.accounts import PASSWORD, prepare
from loadtest.harness.analysis import percentile
from loadtest.reports import page

# Cheap password hashing, as the load test has it: the figures are the store's, not PBKDF2's.
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}


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
        figures[name] = {"ok": len(answered), "tries": tries, "p50_ms": _ms(percentile(ms, 0.5)),
                         "answered": answered}
    return figures


def member_table(rows):
    lines = [f"| members killed (of {rows[0]['members']}) | majority left | writes | linearizable reads "
             "| serializable reads |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]['ok']}/{r[k]['tries']} ok, {r[k]['p50_ms']:g} ms"
                 for k in ("write", "linearizable read", "serializable read")]
        killed = f"{r['gone']}" + (" (the leader)" if r["gone"] == 1 else "")
        lines.append(f"| {killed} | {'yes' if r['majority'] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Through the site


class _Visitor:
    """One browser: its own cookies, CSRF token sent back, redirects not followed."""

    def __init__(self, url):
        self.url = url
        self.jar = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, method, path, *, form=None, json_body=None):
        """(status, body) of one request; a 10 s bound, far beyond any the site sets itself."""
        headers, data = {}, None
        if form is not None:
            data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": self._csrf()}).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if method != "GET":
            headers["X-CSRFToken"] = self._csrf()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _csrf(self):
        return next((c.value for c in self.jar if c.name == "csrftoken"), "")

    def form(self, path, fields):
        """GET the page (for its CSRF cookie), then POST the form."""
        self.request("GET", path)
        return self.request("POST", path, form=fields)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _logged_in(url, username):
    """A visitor logged in as a user made beforehand (loadtest/harness/accounts.py)."""
    visitor = _Visitor(url)
    status, body = visitor.form("/accounts/login/", {"username": username, "password": PASSWORD})
    if status != 302:
        raise RuntimeError(f"login answered {status}: {body[:200]!r}")
    return visitor


def _served(answer):
    """The answer (status, body) if it is not a 503, else None: the store is still out."""
    return answer if answer[0] != 503 else None


def _timed(call, expected):
    started = time.perf_counter()
    status, body = call()
    ms = (time.perf_counter() - started) * 1000
    return {"ok": status == expected, "ms": ms, "etcd_503": status == 503 and b"etcd" in body,
            "status": status, "body": body}


def _tally(results):
    ok = [r["ms"] for r in results if r["ok"]]
    refused = [r["ms"] for r in results if r["etcd_503"]]
    return {"tries": len(results), "ok": len(ok), "ok_p50_ms": _ms(percentile(ok, 0.5)),
            "etcd_503": len(refused), "etcd_503_p50_ms": _ms(percentile(refused, 0.5)),
            "etcd_503_max_ms": _ms(max(refused, default=None)),
            "other": sorted({r["status"] for r in results if not r["ok"] and not r["etcd_503"]})}


def _ms(value):
    return None if value is None else round(value, 1)


class _SiteRun:
    """The users of one run and what was acknowledged to them."""

    def __init__(self, url, tries, rows, state_dir):
        self.url = url
        names = prepare(tries * (rows + 1), state_dir=state_dir)
        self.writers = [_logged_in(url, name) for name in names[:tries]]
        # A user per login: a login that fails counts against its user (accounts/throttle.py).
        self.logins = [names[tries * (row + 1):tries * (row + 2)] for row in range(rows)]
        self.acknowledged = [None] * tries  # the last counter acknowledged to each writer
        self.counter = 0

    def row(self, number):
        stale = 0

        def read(i):
            nonlocal stale
            result = _timed(lambda: self.writers[i].request("GET", "/api/session-counter"), 200)
            counter = json.loads(result["body"])["counter"] if result["ok"] else None
            if result["ok"] and self.acknowledged[i] is not None and (counter or 0) < self.acknowledged[i]:
                stale += 1
            return result

        def write(i):
            self.counter += 1
            counter = self.counter
            result = _timed(lambda: self.writers[i].request("POST", "/api/session-counter",
                                                            json_body={"counter": counter}), 200)
            if result["ok"]:
                self.acknowledged[i] = counter
            return result

        def log_in(i):
            fields = {"username": self.logins[number][i], "password": PASSWORD}
            visitor = _Visitor(self.url)
            visitor.request("GET", "/accounts/login/")
            return _timed(lambda: visitor.request("POST", "/accounts/login/", form=fields), 302)

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
            status, body = wait_for(lambda v=visitor: _served(v.request("GET", "/api/session-counter")),
                                    timeout=30, what="a session read to be served")
            counter = json.loads(body)["counter"]
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
        wait_for(lambda: run.writers[0].request("GET", "/api/session-counter")[0] == 200, timeout=30,
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
        result = _timed(lambda: visitor.request("GET", "/api/session-counter"), 200)
        if result["ok"]:
            return {"served_after_s": round(time.monotonic() - started, 2), "failed": len(failures),
                    "failed_etcd_503": sum(r["etcd_503"] for r in failures),
                    "failed_max_ms": _ms(max((r["ms"] for r in failures), default=None))}
        failures.append(result)
    raise RuntimeError(f"the site served no session read within {deadline} s of the leader's kill")


def site_table(report):
    rows = report["rows"]
    lines = [f"| members killed (of {rows[0]['members']}) | majority left | logins | session reads "
             "| session writes |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = [_site_cell(r[k]) for k in ("login", "session read", "session write")]
        if r["session read"]["stale"]:
            cells[1] += f", {r['session read']['stale']} stale"
        killed = f"{r['gone']}" + (" (the leader)" if r["gone"] == 1 else "")
        lines.append(f"| {killed} | {'yes' if r['majority'] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _site_cell(t):
    parts = [f"{t['ok']}/{t['tries']} ok" + (f", {t['ok_p50_ms']:g} ms" if t["ok"] else "")]
    if t["etcd_503"]:
        parts.append(f"{t['etcd_503']} × 503 naming etcd, {t['etcd_503_p50_ms']:g} ms (max {t['etcd_503_max_ms']:g})")
    if t["other"]:
        parts.append(f"other answers: {', '.join(map(str, t['other']))}")
    return "; ".join(parts)


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
    lines = ["| leader before the cut | side: members (role during the split) | writes | linearizable reads "
             "| serializable reads | after healing: acknowledged writes found | unacknowledged writes found |",
             "|---|---|---|---|---|---|---|"]
    for split in splits:
        for side, seen in split["during"].items():
            members = ", ".join(f"{n}{'*' if n == seen['asked'] else ''} ({r})"
                                for n, r in zip(seen["members"], seen["roles"]))
            cells = [f"{seen[k]['ok']}/{seen[k]['tries']} ok, {seen[k]['p50_ms']:g} ms"
                     for k in ("write", "linearizable read", "serializable read")]
            acknowledged, found = set(seen["write"]["answered"]), set(split["found_after_heal"][side])
            lines.append(f"| {split['old_leader']}, on the {split['leader_side']} side | {side}: {members} | "
                         + " | ".join(cells) + f" | {len(acknowledged & found)} of {len(acknowledged)} | "
                         f"{len(found - acknowledged)} of {seen['write']['tries'] - len(acknowledged)} |")
    return "\n".join(lines) + "\n\n* the member asked (a follower before the cut)"


def split_timings(splits):
    return "\n".join(
        f"leader on the {s['leader_side']} side ({s['old_leader']}): the large side elected {s['new_leader']} "
        f"{s['leader_elected_s']} s after the cut; the small side had no leader after "
        f"{s['small_side_leaderless_s']} s; "
        f"healed, every member followed {s['leader_after_heal']} {s['rejoined_s']} s later"
        for s in splits)


# The page


TITLES = {"members": "etcd with members killed: what a majority store still does",
          "site": "The site on etcd with members killed: what users see",
          "partition": "etcd split 2 | 3: which side serves"}


def text(mode, figures):
    """The mode's tables and lines, as the terminal and the page show them."""
    if mode == "members":
        return member_table(figures)
    if mode == "partition":
        return split_table(figures) + "\n\n" + split_timings(figures)
    loss = figures["leader_loss"]
    return "\n\n".join([
        site_table(figures),
        f"after the leader's kill: the first session read served {loss['served_after_s']} s later; "
        f"{loss['failed']} failed before it ({loss['failed_etcd_503']} of them 503s naming etcd, "
        f"the slowest {loss['failed_max_ms']} ms)",
        f"killed members started again: {figures['lost_after_restart']} of {figures['writers']} users had lost "
        f"an acknowledged session write ({figures['acknowledged_writes']} acknowledged in all)"])


def headline(mode, figures):
    if mode == "members":
        return "; ".join(f"{r['gone']} of {r['members']} killed: {r['write']['ok']}/{r['write']['tries']} writes"
                         for r in figures)
    if mode == "partition":
        return "; ".join(f"leader on the {s['leader_side']} side: the large side elected a leader in "
                         f"{s['leader_elected_s']:g} s, "
                         f"{s['during']['small']['write']['ok']}/{s['during']['small']['write']['tries']} writes "
                         "on the small side" for s in figures)
    return (f"{figures['lost_after_restart']} of {figures['writers']} users lost an acknowledged session write; "
            f"the site served again {figures['leader_loss']['served_after_s']} s after the leader's kill")


def write(out, run, mode, figures):
    """report.html and run.json in out (loadtest/reports/page.py); return the text."""
    body = text(mode, figures)
    page.write(out, run, title=TITLES[mode], headline=headline(mode, figures),
               sections=[("", page.paragraphs(f"Figures: {mode}.json beside this page.")), ("", page.markdown(body))])
    return body
