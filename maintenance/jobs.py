"""The periodic maintenance a deployment needs once per period, cluster-wide.

Each period: remove expired database sessions (Django leaves that to a
`clearsessions` job) and expired session files, write each active room's
activity rollup, and delete rollups and runs older than ROLLUP_RETENTION.
Every write of a period happens in one fenced transaction, with the Run
row whose unique
period_start makes a second copy impossible.
"""

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.module_loading import import_module

from chat.maintenance import delete_rollups_before, measure_rollup, write_rollup
from maintenance.fencing import fenced
from maintenance.models import Run

LEASE_NAME = "maintenance"
MAX_CATCH_UP = 50  # periods: after a long outage, skip what is too old to matter


def due_periods(period, now):
    """Period starts (epoch seconds) that ended and have no Run yet, oldest first."""
    latest = int(now // period) * period - period
    last = Run.objects.order_by("-period_start").values_list("period_start", flat=True).first()
    first = latest if last is None else int(last.timestamp()) + period
    first = max(first, latest - (MAX_CATCH_UP - 1) * period)
    return list(range(first, latest + 1, period))


def run_due_periods(*, token, holder, period, instance, still_holding, working):
    for start in due_periods(period, time.time()):
        if not still_holding():
            return
        run_period(start, period, token=token, holder=holder, instance=instance, still_holding=still_holding,
                   working=working)


def run_period(start, period, *, token, holder, instance, still_holding, working):
    """Do one period's work; working(True/False) marks the time between deciding and writing.

    Everything slow (reading the rooms, presence in Redis) happens before the
    fenced transaction, which only writes: it holds the database's write lock.
    """
    begins = datetime.fromtimestamp(start, UTC)
    ends = datetime.fromtimestamp(start + period, UTC)
    rollup = measure_rollup(begins, ends)
    if not still_holding():
        return
    # Files are outside the database's transaction: removed here, counted in
    # the Run below. Only expired ones, so a holder that turns out stale
    # removed nothing a user still had.
    files_cleared = clear_expired_elsewhere()
    # Between this decision and the write, a holder can always be paused (a
    # long GC, SIGSTOP, a slow disk); only the fence catches that. The tests
    # and demos stretch this gap with MAINTENANCE_WORK_SECONDS (zero in
    # production) so that a pause lands inside it.
    working(True)
    try:
        time.sleep(settings.MAINTENANCE_WORK_SECONDS)
    finally:
        working(False)
    with fenced(LEASE_NAME, token, holder=holder, instance=instance):
        # The fence's UPDATE serialises holders: a period done meanwhile is done.
        if Run.objects.filter(period_start=begins).exists():
            return
        cleared, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
        Run.objects.create(period_start=begins, token=token, instance=instance,
                           sessions_cleared=cleared + files_cleared)
        write_rollup(begins, rollup, token=token)
        # The newest run is never past retention, so due_periods always has it.
        expired = begins - timedelta(seconds=settings.ROLLUP_RETENTION)
        delete_rollups_before(expired)
        Run.objects.filter(period_start__lt=expired).delete()


def clear_expired_elsewhere():
    """Sessions an engine keeps outside the database (files) expire through its module's clear_expired().

    Return how many it removed; 0 for engines without one (the database's
    rows are deleted in the fenced transaction, a cache or a lease expires
    its own).
    """
    clear = getattr(import_module(settings.SESSION_ENGINE), "clear_expired", None)
    return clear() if clear else 0
