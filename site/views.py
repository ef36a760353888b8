"""Liveness and readiness."""

from django.conf import settings
from django.core.cache import caches
from django.http import JsonResponse

from chat.presence import presence_store
from labsite.stores import StoreUnavailable, check_database, store_errors


def healthz(request):
    """Answer as long as the process runs; touch nothing external."""
    return JsonResponse({"status": "alive", "instance": settings.INSTANCE_NAME})


def _check_cache(alias, store):
    with store_errors(store):
        caches[alias].get("readyz")


def readyz(request):
    """Answer 200 only if the database and every store this instance needs answer.

    A cached_db cache is left out: when it is down, sessions fall back to
    the database.
    """
    checks = {"database": check_database}
    if settings.SESSION_STORE in ("redis", "memcached"):
        checks["sessions"] = lambda: _check_cache("sessions", settings.SESSION_STORE)
    if settings.SHARED_STORE != "memory":
        checks["counters"] = lambda: _check_cache("shared", settings.SHARED_STORE)
    checks["presence"] = lambda: presence_store().check()
    for check in checks.values():
        try:
            check()
        except StoreUnavailable as failure:
            return JsonResponse(
                {"status": "unavailable", "error": str(failure), "store": failure.store},
                status=503,
            )
    return JsonResponse(
        {"status": "ready", "instance": settings.INSTANCE_NAME, "checked": list(checks)}
    )
