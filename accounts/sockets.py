"""Who opens a WebSocket: the handshake's checks, as the HTTP path makes them.

`SocketAuthMiddleware` wraps the WebSocket routes (site/asgi.py names it in
WEBSOCKET_MIDDLEWARE) and puts its verdict in the scope: `user`, or
`refusal` ({"code", "reason", "store"}) for the consumer to close with:
4403 for a foreign Origin, 4401 without a valid login, 4503 with `store`
set when a store could not be read.

A WebSocket is authenticated once, at its handshake, by the session cookie
or by `Authorization: Bearer <token>` (never a token in the URL: URLs are
logged). Its `Origin` must name one of ALLOWED_HOSTS: a browser sends the
cookie with a handshake any site's page opens (cross-site WebSocket
hijacking). The session is read through the engine's async methods, which
run the lab's sync ones (labcore/sessions/synced.py), so a session store
that is down raises StoreUnavailable naming it, never an anonymous user.
"""

import time
from types import SimpleNamespace
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import import_string

from accounts.middleware import LAST_SEEN, LOGGED_IN_AT
from accounts.tokens import user_for_token
from labcore.errors import dependency_failure


class SocketAuthMiddleware:
    """ASGI middleware: the handshake's Origin and user, checked before the consumer runs."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        try:
            check_origin(scope)
            scope["user"] = await socket_user(scope)
        except Refused as refused:
            scope["refusal"] = {"code": refused.code, "reason": refused.reason, "store": None}
        except Exception as error:
            failure = dependency_failure(error)
            if failure is None:
                raise
            scope["refusal"] = {"code": 4503, "reason": f"{failure.store} is unavailable", "store": failure.store,
                                "detail": str(failure)}
        return await self.inner(scope, receive, send)


class Refused(Exception):
    """The handshake is refused: `code` is the WebSocket close code, `reason` says why."""

    def __init__(self, code, reason):
        self.code, self.reason = code, reason
        super().__init__(reason)


def headers(scope):
    """The scope's headers as a dict of lower-case names to text (the last of repeated ones)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def check_origin(scope):
    """Refused (4403) unless the handshake's Origin names one of ALLOWED_HOSTS."""
    origin = headers(scope).get("origin", "")
    host = urlsplit(origin).netloc if origin else ""
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        raise Refused(4403, f"the Origin {origin[:100]!r} is not one of this site's hosts")


async def socket_user(scope):
    """The handshake's user: by Bearer token, else by session cookie; Refused (4401) without a valid one.

    StoreUnavailable when the session store cannot be read.
    """
    found = headers(scope)
    if "authorization" in found:
        scheme, _, token = found["authorization"].partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(4401, "the Authorization header must be 'Bearer <token>'")
        user = await sync_to_async(user_for_token)(token.strip())
        if user is None:
            raise Refused(4401, "the bearer token is invalid or expired; get a new one at /api/token")
        return user
    session_key = _cookie(found.get("cookie", ""), settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise Refused(4401, "log in first: no session cookie and no bearer token")
    session = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
    user = await aget_user(SimpleNamespace(session=session))
    if isinstance(user, AnonymousUser) or await _lapsed(session):
        raise Refused(4401, "the session is not logged in (expired, idle or logged out); log in again")
    return user


async def _lapsed(session):
    """The idle and absolute limits of accounts/middleware.py's IdleTimeoutMiddleware, read-only."""
    if not settings.IDLE_TIMEOUT:
        return False
    now = int(time.time())
    last_seen = await session.aget(LAST_SEEN, now)
    logged_in_at = await session.aget(LOGGED_IN_AT, now)
    return now - last_seen > settings.IDLE_TIMEOUT or now - logged_in_at > settings.SESSION_COOKIE_AGE


def _cookie(header, name):
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return ""
