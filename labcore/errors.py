"""Error responses: JSON under /api/, a plain page elsewhere, never a traceback."""

import logging
import secrets
import sys

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import render

from labcore.stores import StoreUnavailable

logger = logging.getLogger(__name__)


def is_api(request):
    """Machine endpoints answer errors in JSON."""
    return request.path.startswith(("/api/", "/healthz", "/readyz"))


def dependency_failure(exception):
    """Return the StoreUnavailable behind an exception, or None."""
    if isinstance(exception, StoreUnavailable):
        return exception
    if isinstance(exception, (OperationalError, InterfaceError)):
        return StoreUnavailable("database", str(exception))
    return None


def store_unavailable_response(request, failure):
    """A 503 that names the failed store and a request id, and what the failure says the client may see.

    The failure's detail (a path, a host and port, a connection pool, the
    store's own words) is for the operator: it goes to the log under the
    request id, which the client can quote. Its `public` part (how many
    replicas confirmed a write) is written for the client.
    """
    request_id = secrets.token_hex(8)
    logger.warning("request %s: %s %s: %s", request_id, request.method, request.path, failure)
    said = f"{failure.store} is unavailable" + (f": {failure.public}" if failure.public else "")
    if is_api(request):
        response = JsonResponse({"error": f"{said}; request id {request_id}",
                                 "store": failure.store, "request_id": request_id}, status=503)
    else:
        response = render(request, "503.html", {"store": failure.store, "public": failure.public,
                                                "request_id": request_id}, status=503)
    response["Retry-After"] = "1"
    return response


def not_found(request, exception=None):
    if is_api(request):
        return JsonResponse({"error": f"no such endpoint: {request.path}"}, status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    failure = dependency_failure(sys.exception())
    if failure is not None:
        return store_unavailable_response(request, failure)
    if is_api(request):
        return JsonResponse({"error": "internal error; see the instance's log"}, status=500)
    return render(request, "500.html", status=500)


def bad_request(request, exception=None):
    if is_api(request):
        return JsonResponse({"error": f"bad request: {exception}"}, status=400)
    return render(request, "400.html", status=400)


def csrf_failure(request, reason=""):
    if is_api(request):
        return JsonResponse({"error": f"CSRF check failed: {reason}"}, status=403)
    return render(request, "403_csrf.html", {"reason": reason}, status=403)
