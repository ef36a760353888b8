"""Liveness and readiness: /healthz and /readyz.

/readyz checks the database, the session store when its engine module has
a check(), and the shared cache for counters; apps add the checks of their
own stores with `readiness_check` from their AppConfig.ready(). /healthz
touches nothing external; apps add figures of their own process to it
with `liveness_figure` (the chat: its open WebSockets, which deploy reads).
"""

from django.conf import settings
from django.core.cache import caches
from django.http import JsonResponse
from django.utils.module_loading import import_module

from labcore.errors import store_unavailable_response
from labcore.registry import MEMORY
from labcore.stores import StoreUnavailable, check_database, store_errors

_app_checks = {}
_app_figures = {}


def readiness_check(name, check):
    """Have /readyz call check(), which raises StoreUnavailable when its store does not answer."""
    _app_checks[name] = check


def liveness_figure(name, read):
    """Have /healthz answer read() as `name`: a figure of this process, read without touching any store."""
    _app_figures[name] = read


def check_cache(alias, store):
    """Raise StoreUnavailable(store) unless the cache alias answers."""
    with store_errors(store):
        caches[alias].get("readyz")


def readiness_checks():
    """Every check /readyz runs, by name, in order.

    cached_db's engine has no check: when its cache is down, sessions fall
    back to the database.
    """
    checks = {"database": check_database}
    engine = import_module(settings.SESSION_ENGINE)
    if hasattr(engine, "check"):
        checks["sessions"] = engine.check
    if settings.SHARED_STORE != MEMORY:
        checks["counters"] = lambda: check_cache("shared", settings.SHARED_STORE)
    return {**checks, **_app_checks}


def healthz(request):
    """Answer as long as the process runs; touch nothing external."""
    return JsonResponse({"status": "alive", "instance": settings.INSTANCE_NAME,
                         **{name: read() for name, read in _app_figures.items()}})


def readyz(request):
    """Answer 200 only if the database and every store this instance needs answer."""
    checks = readiness_checks()
    for check in checks.values():
        try:
            check()
        except StoreUnavailable as failure:
            return store_unavailable_response(request, failure)
    return JsonResponse(
        {"status": "ready", "instance": settings.INSTANCE_NAME, "checked": list(checks)}
    )
