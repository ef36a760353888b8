"""A user of the site whose every request is an operation in the run's history (history.py).

Each request is invoked, then completed as ok (the answer the API promises),
failed (any other answer: the site refused, and "refusal" keeps its status),
or unknown (no answer within the site's OPERATION_TIMEOUT, or the connection
broke: the request may have taken effect). The user talks to one instance
(`node`) through the one client of the site (site.py) unless a request
names another address.

Messages: a post is recorded as "post", sent as {"room", "client_id"} and
acknowledged (201, or 200 for a replay of the same client_id) as {"room",
"client_id", "id"}, the id the site gave it (socket_client.py's posts have
the same shape); a poll as "poll" {"room", "ids"}, the messages it
delivered; a read-back of a room as "final-poll" {"room", "messages":
[[id, client_id], ...]}. checkers.polls_missed_or_seen_twice and
checkers.posts_lost read them.
"""

import requests

from loadtest.harness.site import COUNTER, OPERATION_TIMEOUT, Site, messages_path, new_message, presence_path

ROOM = "split"
PAGE = 200  # messages a poll or a read-back asks for at most (the site's limit)


class User:
    """One simulated user: `name` made beforehand (loadtest/harness/accounts.py), pinned to `node` at `url`.

    served_by: record as each answered operation's node the instance that
    served it (its X-Served-By), for a user behind a load balancer.
    token: a bearer token in place of a login (the auditor's, for a read-back).
    """

    def __init__(self, history, node, url, name, *, served_by=False, token=None):
        self.history, self.node, self.url, self.name = history, node, url, name
        self.site = Site(url, timeout=OPERATION_TIMEOUT, token=token)
        self.served_by = served_by
        self.counter = 0  # the last counter this user wrote, acknowledged or not
        self.posts = 0  # the messages this user sent, acknowledged or not
        self.cursors = {}  # room: the id of the last message a poll delivered there (0: none yet, the room empty)

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

    def post(self, room):
        """Post a new message (a new client_id) to `room`; the id the site acknowledged it with, or None."""
        self.posts += 1
        message = new_message(f"{self.name} {self.posts}")
        sent = {"room": room, "client_id": message["client_id"]}
        answer = self._record("post", lambda: self.site.api("POST", messages_path(room), **message), value=sent,
                              ok=(200, 201), read=lambda answer: {**sent, "id": answer.json()["id"]})
        return answer and answer.json()["id"]

    def poll(self, room):
        """Read the messages of `room` after this user's cursor, and move the cursor past them; their ids, or None.

        The first poll of a room has no cursor: it gets the latest messages
        (the user joins the room at its end) and sets the cursor.
        """
        after = self.cursors.get(room)
        answer = self._record("poll", lambda: self.site.request("GET", messages_path(room, after=after, limit=PAGE)),
                              value={"room": room, "after": after},
                              read=lambda answer: {"room": room, "ids": [m["id"] for m in answer.json()["messages"]]})
        if answer is None:
            return None
        cursor = answer.json()["cursor"]
        self.cursors[room] = cursor if cursor is not None else 0
        return [m["id"] for m in answer.json()["messages"]]

    def read_back(self, room, *, after=0):
        """Read every message of `room` with an id above `after`, page by page, as one "final-poll" operation.

        The [id, client_id] pairs read, or None when a page was refused or
        did not come (the read-back then confirms no message).
        """
        held = []

        def pages():
            cursor = after
            while True:
                answer = self.site.request("GET", messages_path(room, after=cursor, limit=PAGE))
                page = answer.json()["messages"] if answer.status_code == 200 else []
                if not page:
                    return answer
                held.extend([m["id"], m["client_id"]] for m in page)
                cursor = page[-1]["id"]

        answer = self._record("final-poll", pages, value={"room": room, "after": after},
                              read=lambda _: {"room": room, "messages": held})
        return held if answer is not None else None

    def online(self, url, node):
        """Read who is online in the room at `url`; the names, or None."""
        answer = self._record("presence-read", lambda: self.site.request("GET", presence_path(ROOM), url=url),
                              node=node, read=lambda answer: sorted(answer.json().get("online", ())))
        return answer and answer.json().get("online")

    def _record(self, what, send, *, value=None, node=None, ok=200, read=None):
        """Send, and record the operation; the answer when it was ok (`ok`: a status, or a tuple of them), else None."""
        op = self.history.invoke(self.name, what, node or self.node, value)
        try:
            answer = send()
        except requests.RequestException:
            self.history.complete(op, "unknown", keep_value=True)
            return None
        served = answer.headers.get("X-Served-By") if self.served_by else None
        if answer.status_code not in (ok if isinstance(ok, tuple) else (ok,)):
            self.history.complete(op, "failed", refusal=str(answer.status_code), keep_value=True, node=served)
            return None
        self.history.complete(op, "ok", value=read(answer) if read else value, node=served)
        return answer
