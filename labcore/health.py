"""Liveness and readiness: /healthz and /readyz.

/readyz checks the database and the caches the configured stores rely on
(read from settings, which the registry filled in); apps add the checks of
their own stores with `readiness_check` from their AppConfig.ready().
"""

from django.conf import settings
from django.core.cache import caches
from django.http import JsonResponse

from labcore.registry import MEMORY
from labcore.stores import StoreUnavailable, check_database, store_errors

_app_checks = {}


def readiness_check(name, check):
    """Have /readyz call check(), which raises StoreUnavailable when its store does not answer."""
    _app_checks[name] = check


def _check_cache(alias, store):
    with store_errors(store):
        caches[alias].get("readyz")


def readiness_checks():
    """Every check /readyz runs, by name, in order.

    A cached_db cache is left out: when it is down, sessions fall back to
    the database.
    """
    checks = {"database": check_database}
    if settings.SESSION_READY_NEEDS_CACHE:
        checks["sessions"] = lambda: _check_cache("sessions", settings.SESSION_STORE)
    if settings.SHARED_STORE != MEMORY:
        checks["counters"] = lambda: _check_cache("shared", settings.SHARED_STORE)
    return {**checks, **_app_checks}


def healthz(request):
    """Answer as long as the process runs; touch nothing external."""
    return JsonResponse({"status": "alive", "instance": settings.INSTANCE_NAME})


def readyz(request):
    """Answer 200 only if the database and every store this instance needs answer."""
    checks = readiness_checks()
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
