"""Acknowledged session writes and logins: what each user was promised, and what is still there.

In the store-fault experiments each simulated user writes a counter into
its own session on every tick (`POST /api/session-counter`, one higher each
time) and keeps a ledger of its current session: whether it began with a
login the site acknowledged, and every counter value the site acknowledged
since. A value is lost when the session no longer shows it:

- the session is gone (401): every value acknowledged in it is lost, and so
  is the login that began it;
- the session went back to an older state (a write finds a lower counter
  than the last acknowledged, or none): the values above what it holds.

Writes answered with an error are not in the ledger: nobody was promised
them. After the run the experiment reads back every session a user held,
with its last cookies (`read_back`): its current one, and each it left for
a fresh login in the burst (a login just before the fault is exactly the
one a store may lose, and the user may have moved on before noticing). It
counts what is gone by the same rules.
"""

from bisect import bisect_right

import requests

from loadtest.harness.site import COUNTER, Site


class Ledger:
    """One user's current session as the site acknowledged it."""

    def __init__(self):
        self.cookies = {}
        self.login = False  # the session began with an acknowledged login
        self.acked = []  # counter values acknowledged in this session, ascending

    def logged_in(self, cookies):
        """A login was acknowledged: a new session begins (the old one is left behind, not lost)."""
        self.cookies, self.login, self.acked = dict(cookies), True, []

    def written(self, counter, previous, cookies):
        """A write of `counter` was acknowledged after it found `previous`; return the values found lost."""
        lost = self.lost_above(previous)
        self.acked = self.acked[:len(self.acked) - lost]
        self.acked.append(counter)
        self.cookies = dict(cookies)
        return lost

    def lost_above(self, counter):
        """How many acknowledged values the session lost if it holds `counter` (None: no counter)."""
        if counter is None:
            return len(self.acked)
        return len(self.acked) - bisect_right(self.acked, counter)

    def gone(self):
        """The session is gone: return (values lost, logins lost), and forget it."""
        lost = (len(self.acked), int(self.login))
        self.login, self.acked = False, []
        return lost

    def as_json(self):
        return {"cookies": self.cookies, "login": self.login, "acked": self.acked}


def read_back(url, ledgers):
    """Read every session back after the run; return what was lost at the end.

    ledgers: [(username, Ledger.as_json())]. Sessions whose ledger holds
    nothing (no acknowledged login or write) are skipped.
    """
    totals = {"sessions_read": 0, "users_gone": [], "writes_lost": 0, "logins_lost": 0, "unreadable": 0,
              "rolled_back": []}
    for username, ledger in sorted(ledgers, key=lambda entry: entry[0]):
        if not (ledger["login"] or ledger["acked"]):
            continue
        totals["sessions_read"] += 1
        status, body = _get(url, ledger["cookies"])
        record = Ledger()
        record.login, record.acked = ledger["login"], ledger["acked"]
        if status == 401:
            writes, logins = record.gone()
            totals["users_gone"].append(username)
            totals["writes_lost"] += writes
            totals["logins_lost"] += logins
        elif status == 200:
            lost = record.lost_above(body.get("counter"))
            if lost:
                totals["rolled_back"].append(username)
                totals["writes_lost"] += lost
        else:
            totals["unreadable"] += 1
    return totals


def _get(url, cookies):
    """(status, JSON body) of the session's counter read with these cookies; (None, {}) when no answer came."""
    visitor = Site(url)
    visitor.http.cookies.update(cookies)
    try:
        answer = visitor.request("GET", COUNTER)
    except requests.RequestException:
        return None, {}
    return answer.status_code, answer.json() if answer.status_code == 200 else {}
