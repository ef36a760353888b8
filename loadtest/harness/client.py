"""A user of the site whose every request is an operation in the run's history (history.py).

Each request is invoked, then completed as ok (the answer the API promises),
failed (any other answer: the site refused, and "refusal" keeps its status),
or unknown (no answer within the site's OPERATION_TIMEOUT, or the connection
broke: the request may have taken effect). The user talks to one instance
(`node`) through the one client of the site (site.py) unless a request
names another address.
"""

import requests

from loadtest.harness.site import COUNTER, OPERATION_TIMEOUT, Site, presence_path

ROOM = "split"


class User:
    """One simulated user: `name` made beforehand (loadtest/harness/accounts.py), pinned to `node` at `url`.

    served_by: record as each answered operation's node the instance that
    served it (its X-Served-By), for a user behind a load balancer.
    """

    def __init__(self, history, node, url, name, *, served_by=False):
        self.history, self.node, self.url, self.name = history, node, url, name
        self.site = Site(url, timeout=OPERATION_TIMEOUT)
        self.served_by = served_by
        self.counter = 0  # the last counter this user wrote, acknowledged or not

    def log_in(self):
        """Log in at the user's instance; True when the site acknowledged it (302)."""
        return self._record("login", lambda: self.site.log_in(self.name), ok=302) is not None

    def write(self):
        """Write the next counter into the session; True when acknowledged."""
        self.counter += 1
        return self._record("write", lambda: self.site.api("POST", COUNTER, counter=self.counter,
                                                             room=ROOM), value=self.counter) is not None

    def heartbeat(self):
        return self._record("heartbeat", lambda: self.site.api("POST", presence_path(ROOM))) is not None

    def read(self, what="read", url=None, node=None):
        """Read the session's counter (at `url`, as `node`, if given); the counter, or None."""
        answer = self._record(what, lambda: self.site.request("GET", COUNTER, url=url), node=node,
                              read=lambda answer: answer.json().get("counter"))
        return answer and answer.json().get("counter")

    def online(self, url, node):
        """Read who is online in the room at `url`; the names, or None."""
        answer = self._record("presence-read", lambda: self.site.request("GET", presence_path(ROOM), url=url),
                              node=node, read=lambda answer: sorted(answer.json().get("online", ())))
        return answer and answer.json().get("online")

    def _record(self, what, send, *, value=None, node=None, ok=200, read=None):
        """Send, and record the operation; the answer when it was ok, else None."""
        op = self.history.invoke(self.name, what, node or self.node, value)
        try:
            answer = send()
        except requests.RequestException:
            self.history.complete(op, "unknown", keep_value=True)
            return None
        served = answer.headers.get("X-Served-By") if self.served_by else None
        if answer.status_code != ok:
            self.history.complete(op, "failed", refusal=str(answer.status_code), keep_value=True, node=served)
            return None
        self.history.complete(op, "ok", value=read(answer) if read else value, node=served)
        return answer
