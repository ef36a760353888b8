import threading
import time
from functools import partial

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, logout
from django.contrib.auth.middleware import AuthenticationMiddleware, auser, get_user
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from django.utils.functional import SimpleLazyObject

from accounts.tokens import user_for_token
from labcore.errors import store_unavailable_response
from labcore.stores import StoreUnavailable


class BearerTokenMiddleware:
    """Authenticate /api/ requests that carry `Authorization: Bearer <token>`.

    Such a request never loads a session: it works the same on every
    instance, and keeps working while the session store is down.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # META, not request.headers: the same header, without building a dict of every header on every request.
        header = request.META.get("HTTP_AUTHORIZATION")
        if header and request.path.startswith("/api/"):
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return JsonResponse(
                    {"error": "the Authorization header must be 'Bearer <token>'"}, status=401
                )
            user = user_for_token(token.strip())
            if user is None:
                return JsonResponse(
                    {"error": "the bearer token is invalid or expired; get a new one at /api/token"},
                    status=401,
                )
            request.user = user
            request.auth_method = "token"
        return self.get_response(request)


LAST_SEEN = "_last_seen"
LOGGED_IN_AT = "_logged_in_at"
# Health checks and static files must not touch the session store.
SESSIONLESS_PATHS = ("/healthz", "/readyz", "/static/")


def start_clocks(request):
    """At login: the start of the absolute lifetime, and the first sign of activity."""
    now = int(time.time())
    request.session[LOGGED_IN_AT] = now
    request.session[LAST_SEEN] = now


class IdleTimeoutMiddleware:
    """Log out a login that has seen no request for IDLE_TIMEOUT seconds.

    A login is soft state: it lasts while requests refresh it. The refresh is
    lazy, a session write at most once per IDLE_TIMEOUT / 10, so an active
    user costs no write on most requests; a user is therefore logged out
    between 0.9 and 1.0 x IDLE_TIMEOUT after their last request. Those writes
    renew Django's own expiry too, so the absolute limit, SESSION_COOKIE_AGE
    from the login, is checked here as well. It works the same on every
    session store, since it only reads and writes the session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            if (
                settings.IDLE_TIMEOUT
                and not request.path.startswith(SESSIONLESS_PATHS)
                and settings.SESSION_COOKIE_NAME in request.COOKIES
                and getattr(request, "auth_method", None) != "token"
                and request.user.is_authenticated
            ):
                self._check(request)
        except StoreUnavailable as failure:
            # Raised here, outside any view, it would bypass StoreFailureMiddleware.
            return store_unavailable_response(request, failure)
        return self.get_response(request)

    def _check(self, request):
        now = int(time.time())
        last_seen = request.session.get(LAST_SEEN, now)
        logged_in_at = request.session.get(LOGGED_IN_AT, now)
        if now - last_seen > settings.IDLE_TIMEOUT or now - logged_in_at > settings.SESSION_COOKIE_AGE:
            logout(request)
            request.idle_logout = True
        elif now - last_seen >= settings.IDLE_TIMEOUT / 10 or LAST_SEEN not in request.session:
            request.session[LAST_SEEN] = now


class CachedAuthenticationMiddleware(AuthenticationMiddleware):
    """Django's authentication, with the user of a session cached in the process for a moment.

    Django loads the user from the database on every request that asks who
    it is: a query on the hot path of every poll. The cache is keyed by the
    session's user id, backend and auth hash, so a logout (no user id in
    the session any more) takes effect at once. Saving a user (a new
    password) drops its entries in the process that saves it at once; other
    instances read the new hash within USER_CACHE_SECONDS.
    """

    def process_request(self, request):
        # Django's process_request with cached_user in place of get_user, rather than after it: its own
        # lazy user would be built on every request only to be replaced. Its check of the order stays.
        if not hasattr(request, "session"):
            raise ImproperlyConfigured("CachedAuthenticationMiddleware needs SessionMiddleware before it in "
                                       "MIDDLEWARE")
        request.user = SimpleLazyObject(lambda: cached_user(request))
        request.auser = partial(auser, request)


_users = {}  # (user id, backend, session auth hash) -> (user, monotonic time it was loaded)
_users_lock = threading.Lock()
USERS_KEPT = 10_000  # at most; the cache is emptied past it


def forget_user(sender, instance, **kwargs):
    """A saved user (a new password, deactivated) is read again on its next request."""
    with _users_lock:
        for key in [key for key in _users if key[0] == str(instance.pk)]:
            del _users[key]


def cached_user(request):
    session = request.session
    key = (session.get(SESSION_KEY), session.get(BACKEND_SESSION_KEY), session.get(HASH_SESSION_KEY))
    if key[0] is None or not settings.USER_CACHE_SECONDS:
        return get_user(request)
    now = time.monotonic()
    with _users_lock:
        hit = _users.get(key)
    if hit and now - hit[1] < settings.USER_CACHE_SECONDS:
        return _copy(hit[0])
    user = get_user(request)
    if user.is_authenticated:
        with _users_lock:
            if len(_users) >= USERS_KEPT:
                _users.clear()
            _users[key] = (user, now)
    return user


def _copy(user):
    """A copy of a cached user: concurrent requests of one user must not share one mutable object.

    What copy.copy does for a model (Model.__getstate__: its attributes, its
    state and its cache of related objects, each copied), without going
    through pickle's protocol and the app registry's lookup of the class on
    every request. The state is copied as copy.copy would copy it, from its
    own __getstate__ (which leaves out what must not be shared), but
    without copy's reduce protocol.
    """
    clone = user.__class__.__new__(user.__class__)
    clone.__dict__.update(user.__dict__)
    state = user._state
    clone._state = state.__class__.__new__(state.__class__)
    clone._state.__dict__.update(state.__getstate__())
    clone._state.fields_cache = state.fields_cache.copy()
    return clone
