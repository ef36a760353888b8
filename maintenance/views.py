import logging
import secrets
import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render

from labcore.api import api_view
from labcore.stores import StoreUnavailable, store_errors
from maintenance import scheduler
from maintenance.fencing import highest_token
from maintenance.models import RefusedWrite, Run

logger = logging.getLogger(__name__)


def lease_state():
    """The lease as Redis, this instance and the database each see it."""
    running = scheduler.current()
    redis_view = None
    if running is not None:
        try:
            with store_errors("redis"):
                redis_view = running.lease.info()
        except StoreUnavailable as failure:
            # What failed, for anyone logged in; the detail (hosts, the store's words) only in the log.
            request_id = secrets.token_hex(8)
            logger.warning("request %s: the lease's Redis: %s", request_id, failure)
            redis_view = {"error": f"{failure.store} is unavailable", "request_id": request_id}
    holding = running.holding if running else None
    working_since = running.working_since if running else None
    refused = RefusedWrite.objects.order_by("-at").first()
    return {
        "enabled": running is not None,
        "lease": redis_view,
        "this_instance": {
            "instance": settings.INSTANCE_NAME,
            "holds": holding is not None,
            "acting": bool(running and running.acting()),
            "working": working_since is not None,
            # How far into the stretch between deciding and writing: a test that
            # pauses the holder uses it to know the pause landed inside it.
            "working_for": round(time.monotonic() - working_since, 3) if working_since is not None else None,
            "token": holding.token if holding else None,
            "valid_for": round(holding.valid_until - time.monotonic(), 3) if holding else None,
        },
        "highest_token_in_database": highest_token(scheduler.LEASE_NAME),
        "last_refused_write": refused and {
            "token": refused.token, "highest": refused.highest, "instance": refused.instance,
            "at": refused.at.isoformat(),
        },
        "recent_runs": [
            {"period_start": run.period_start.isoformat(), "token": run.token, "instance": run.instance,
             "sessions_cleared": run.sessions_cleared}
            for run in Run.objects.order_by("-period_start")[:10]
        ],
        "timings": {"ttl": settings.LEASE_TTL, "renew_every": round(settings.LEASE_TTL / 3, 3),
                    "retry": settings.LEASE_RETRY, "period": settings.MAINTENANCE_PERIOD},
    }


# Both need a login: each answer asks Redis and the database, and names the instances.
@api_view("GET")
def lease_api(request):
    return JsonResponse(lease_state())


@login_required
def lease_page(request):
    return render(request, "maintenance/lease.html", {"state": lease_state()})
