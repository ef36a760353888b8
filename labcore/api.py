"""The JSON API's edge: methods, authentication, CSRF and error mapping.

Every /api/ view is wrapped in `api_view`, so every failure of input or
authentication becomes a JSON `{"error": ...}` with a 4xx status, in one
place, and never a redirect to the login page.
"""

import json
import math
import re
from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ApiError(Exception):
    """Bad input, reported to the client as `{"error": message}`."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        super().__init__(message)


def error_response(status, message, **extra):
    return JsonResponse({"error": message, **extra}, status=status)


class _NotANumber:
    """Where the body held NaN, Infinity, -Infinity, or a number no float can hold (1e400).

    Python's json reads the three constants, which standard JSON lacks, and
    turns 1e400 into infinity; either would reach a view as a float that
    int() and the database refuse with a 500. Parsed into this marker
    instead, it is found with its place in the body and refused by name.
    """

    def __init__(self, text):
        self.text = text


def _parse_float(text):
    value = float(text)
    return value if math.isfinite(value) else _NotANumber(text)


def _first_not_a_number(data):
    """The place (`counter`, `a[0].b`) and text of the body's first _NotANumber, or None.

    A loop, not a recursion: a body nested almost as deep as json allows
    would overflow the stack here.
    """
    stack = [("", data)]
    while stack:
        place, value = stack.pop()
        if isinstance(value, _NotANumber):
            return place, value.text
        if isinstance(value, dict):
            stack.extend((f"{place}.{key}" if place else key, item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{place}[{index}]", item) for index, item in enumerate(value))
    return None


def read_json(request):
    """Return the request body as a JSON object of standard JSON values, or raise ApiError(4xx)."""
    # Check the type before touching request.body: the CSRF check may have
    # parsed a form body already, after which the raw body is gone.
    if request.META.get("CONTENT_LENGTH", "") in ("", "0"):
        raise ApiError(400, "the request body is empty; send a JSON object")
    if request.content_type != "application/json":
        raise ApiError(415, f"send a JSON object with Content-Type: application/json, not {request.content_type!r}")
    try:
        data = json.loads(request.body, parse_constant=_NotANumber, parse_float=_parse_float)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError, and integers past Python's
        # 4,300-digit limit are all ValueErrors.
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object")
    if found := _first_not_a_number(data):
        place, text = found
        raise ApiError(400, f"'{place[:80]}' is {text[:40]}: JSON numbers must be finite (no NaN, Infinity, 1e400)")
    return data


def _shown(value):
    """A value as the client wrote it, briefly: `true`, `1.9`, `'abc'`."""
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text[:40]


def require_int(data, name):
    """Return data[name] if it is an integer, or raise ApiError(400).

    A JSON integer, or the digits of a form field. Not a boolean (Python
    counts True as 1) and not a float: 1.9 is not 1.
    """
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # At most 4,300 digits: int() refuses longer ones.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,4300}\s*", value):
        return int(value)
    raise ApiError(400, f"'{name}' must be an integer, not {_shown(value)}" if name in data
                   else f"'{name}' is required and must be an integer")


def require_text(data, name, *, required_because=""):
    """Return data[name] if it is a string a database can store, or raise ApiError(400)."""
    value = data.get(name)
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' is required and must be a string{required_because}")
    if "\x00" in value:
        raise ApiError(400, f"'{name}' contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"'{name}' is not valid Unicode (it holds a lone surrogate)") from None
    return value


def optional_text(data, name, default=""):
    """Return data[name] as require_text checks it, or default when it is absent."""
    return require_text(data, name) if name in data else default


def read_form_or_json(request):
    """Accept either an HTML form post or a JSON object."""
    if request.content_type == "application/json":
        return read_json(request)
    return request.POST


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


# One for the process, as Django keeps one CsrfViewMiddleware per handler: it holds no state of a
# request, and reads the trusted origins from the settings once, as Django's own instance does.
_CSRF_CHECK = _CsrfCheck(lambda request: None)


def _csrf_failure(request):
    """The reason the request fails Django's CSRF check, or None.

    Only process_view: its verdict reads the cookie's secret itself
    (CsrfViewMiddleware._check_token), so process_request, which only
    keeps that secret for the response's cookie, has nothing to add here,
    and the CsrfViewMiddleware in MIDDLEWARE has run it for this request.
    """
    return _CSRF_CHECK.process_view(request, None, (), {})


def api_view(*methods, login_required=True, csrf=True):
    """Serve a JSON API view for the given HTTP methods.

    A request authenticated by a bearer token (see accounts.middleware)
    carries no cookie to forge, so only session-authenticated requests get
    the CSRF check, as in Django REST framework. `csrf=False` is for views
    that set no cookie and answer only to the caller, like /api/token.
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                response = error_response(
                    405, f"method {request.method} not allowed here; use {', '.join(sorted(allowed))}"
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            by_token = getattr(request, "auth_method", None) == "token"
            if login_required and not request.user.is_authenticated:
                if getattr(request, "idle_logout", False):
                    return error_response(
                        401, f"logged out: {settings.IDLE_TIMEOUT:g} s without a request, or the login is "
                             f"older than {settings.SESSION_COOKIE_AGE} s; log in again"
                    )
                return error_response(
                    401, "not logged in: log in, or send Authorization: Bearer <token>"
                )
            if csrf and not by_token and request.method not in SAFE_METHODS:
                reason = _csrf_failure(request)
                if reason:
                    return error_response(403, f"CSRF check failed: {reason}")
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.message)

        # What the view answers to: the tests find every API route and its methods from the URL conf.
        wrapper.api_methods = frozenset(allowed)
        return wrapper

    return decorator
