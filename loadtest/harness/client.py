"""A user of the site whose every request is an operation in the run's history (history.py).

Each request is invoked, then completed as ok (the answer the API promises),
failed (any other answer: the site refused, and "refusal" keeps its status),
or unknown (no answer within TIMEOUT, or the connection broke: the request
may have taken effect). The user talks to one instance (`node`) unless a
request names another address.
"""

import requests

from loadtest._accounts import PASSWORD

TIMEOUT = 3  # seconds a request may take before its outcome is unknown
ROOM = "split"


class User:
    """One simulated user: `name` made beforehand (loadtest/_accounts.py), pinned to `node` at `url`.

    served_by: record as each answered operation's node the instance that
    served it (its X-Served-By), for a user behind a load balancer.
    """

    def __init__(self, history, node, url, name, *, served_by=False):
        self.history, self.node, self.url, self.name = history, node, url, name
        self.served_by = served_by
        self.http = requests.Session()
        self.counter = 0  # the last counter this user wrote, acknowledged or not

    def log_in(self):
        """Log in at the user's instance; True when the site acknowledged it (302)."""
        def send():
            self.http.get(f"{self.url}/accounts/login/", timeout=TIMEOUT)
            return self.http.post(f"{self.url}/accounts/login/", allow_redirects=False, timeout=TIMEOUT, data={
                "username": self.name, "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies.get("csrftoken", "")})
        return self._record("login", send, ok=302) is not None

    def write(self):
        """Write the next counter into the session; True when acknowledged."""
        self.counter += 1
        return self._record("write", lambda: self.call("POST", "/api/session-counter", counter=self.counter,
                                                         room=ROOM), value=self.counter) is not None

    def heartbeat(self):
        return self._record("heartbeat", lambda: self.call("POST", f"/api/rooms/{ROOM}/presence")) is not None

    def read(self, what="read", url=None, node=None):
        """Read the session's counter (at `url`, as `node`, if given); the counter, or None."""
        answer = self._record(what, lambda: self._get(url or self.url, "/api/session-counter"), node=node,
                              read=lambda answer: answer.json().get("counter"))
        return answer and answer.json().get("counter")

    def online(self, url, node):
        """Read who is online in the room at `url`; the names, or None."""
        answer = self._record("presence-read", lambda: self._get(url, f"/api/rooms/{ROOM}/presence"), node=node,
                              read=lambda answer: sorted(answer.json().get("online", ())))
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

    def call(self, method, path, **json_body):
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        return self.http.request(method, f"{self.url}{path}", json=json_body or None, headers=headers,
                                 allow_redirects=False, timeout=TIMEOUT)

    def _get(self, url, path):
        """GET at an address, with this user's cookies (another address: its own connection)."""
        if url == self.url:
            return self.http.get(f"{url}{path}", allow_redirects=False, timeout=TIMEOUT)
        return requests.get(f"{url}{path}", cookies=self.http.cookies.get_dict(), allow_redirects=False,
                            timeout=TIMEOUT)
