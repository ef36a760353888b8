"""A small HTTP client for tests against real processes: cookies, CSRF, no redirects."""

import http.client
import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive, as HTTP headers are
    body: bytes

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class _FromAddress(urllib.request.HTTPHandler):
    """Connect from a chosen local address, e.g. 127.0.0.2: another client on loopback."""

    def __init__(self, address):
        super().__init__()
        self.address = address

    def http_open(self, req):
        return self.do_open(http.client.HTTPConnection, req, source_address=(self.address, 0))


class Browser:
    """Cookies are shared across ports of one host, as in a real browser.

    source: the local address to connect from, to be a distinct client.
    """

    def __init__(self, source=None):
        self.cookies = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()]
        if source:
            handlers.append(_FromAddress(source))
        self._opener = urllib.request.build_opener(*handlers)

    def cookie(self, name):
        return next((c.value for c in self.cookies if c.name == name), None)

    def request(self, method, url, *, form=None, json_body=None, headers=None):
        headers = dict(headers or {})
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if method not in ("GET", "HEAD") and self.cookie("csrftoken"):
            headers["X-CSRFToken"] = self.cookie("csrftoken")
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=10) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, err.headers, err.read())

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def log_in(self, base, username, password):
        self.get(f"{base}/accounts/login/")
        return self.post(
            f"{base}/accounts/login/",
            form={"username": username, "password": password, "csrfmiddlewaretoken": self.cookie("csrftoken")},
        )

    def sign_up(self, base, username, password):
        self.get(f"{base}/accounts/signup/")
        return self.post(
            f"{base}/accounts/signup/",
            form={
                "username": username,
                "password1": password,
                "password2": password,
                "csrfmiddlewaretoken": self.cookie("csrftoken"),
            },
        )
