"""The one client of the site: sign-up, log in, the API calls, every payload and path, one password, one timeout.

Every experiment, audit and benchmark talks to the site through `Site`
(one visitor: its own cookies, the CSRF token sent back, redirects never
followed, so a login's 302 is its acknowledgement). The Locust users keep
Locust's own HTTP client for the requests Locust times, and take their
forms, payloads and paths from here.

The password policy: every simulated user has PASSWORD
(loadtest/harness/accounts.py), made beforehand or signed up with it.

The timeout policy: a request of the set-up, the read-back or the audit
waits at most TIMEOUT (10 s, far beyond any bound the site sets itself on a
store), so that a slow answer is still an answer. A request whose missing
answer is itself a finding waits OPERATION_TIMEOUT (3 s): an operation
recorded in a history, which then counts as unknown (the write may have
happened, history.py), and a probe of an instance during a fault (its
lease view, a server's readiness), which then counts as no answer.
"""

import uuid

import requests

from loadtest.harness.accounts import PASSWORD

TIMEOUT = 10
OPERATION_TIMEOUT = 3
LOGIN, SIGNUP, ME, COUNTER = "/accounts/login/", "/accounts/signup/", "/api/me", "/api/session-counter"
CSRF_COOKIE = "csrftoken"


def login_form(username, password=PASSWORD):
    return {"username": username, "password": password}


def signup_form(username, password=PASSWORD):
    return {"username": username, "password1": password, "password2": password}


def new_message(text, client_id=None):
    """A message to post: the client_id makes a retried post idempotent (the site stores it once)."""
    return {"text": text, "client_id": client_id or str(uuid.uuid4())}


def messages_path(room, *, after=None, limit=None):
    query = "&".join(f"{name}={value}" for name, value in (("after", after), ("limit", limit)) if value is not None)
    return f"/api/rooms/{room}/messages" + (f"?{query}" if query else "")


def presence_path(room):
    return f"/api/rooms/{room}/presence"


class Site:
    """One visitor of the site at `url`: a requests session, or a bearer `token` (the auditor's) in its place."""

    def __init__(self, url, *, timeout=TIMEOUT, token=None):
        self.url, self.timeout = url, timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    @property
    def csrf(self):
        return self.http.cookies.get(CSRF_COOKIE, "")

    def request(self, method, path, *, url=None, form=None, json=None):
        """One request (at another address `url`, with these cookies, if given); the answer, whatever its status.

        Raises requests.RequestException when no answer came within the timeout, or the connection broke.
        """
        headers = {"X-CSRFToken": self.csrf} if method != "GET" else {}
        data = {**form, "csrfmiddlewaretoken": self.csrf} if form is not None else None
        if url and url != self.url:  # another address: these cookies sent whatever host set them
            return requests.request(method, f"{url}{path}", data=data, json=json, headers=headers,
                                    cookies=self.http.cookies.get_dict(), allow_redirects=False,
                                    timeout=self.timeout)
        return self.http.request(method, f"{url or self.url}{path}", data=data, json=json, headers=headers,
                                 allow_redirects=False, timeout=self.timeout)

    def form(self, path, fields):
        """GET the form's page (for its CSRF cookie), then POST the form."""
        self.request("GET", path)
        return self.request("POST", path, form=fields)

    def log_in(self, username, password=PASSWORD):
        """Log in; the answer (302: acknowledged)."""
        return self.form(LOGIN, login_form(username, password))

    def sign_up(self, username, password=PASSWORD):
        """Sign up (and so log in); the answer (302: acknowledged)."""
        return self.form(SIGNUP, signup_form(username, password))

    def api(self, method, path, **body):
        """An API call, its JSON body given as keywords; the answer."""
        return self.request(method, path, json=body or None)

    def logged_in(self, username, password=PASSWORD):
        """Log in, or raise RuntimeError naming the answer: for set-up, where a refused login ends the run."""
        answer = self.log_in(username, password)
        if answer.status_code != 302:
            raise RuntimeError(f"{username}: login answered {answer.status_code}: {answer.text[:200]!r}")
        return self

    def cookie_header(self):
        """The visitor's cookies as one Cookie header, for a load generator that replays them (wrk)."""
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
