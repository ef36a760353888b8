"""The maintenance scheduler: every instance runs one; only the lease holder acts.

Timings (settings, in seconds): the lease lives LEASE_TTL and is renewed
every LEASE_TTL / 3, also while a job runs, so one failed renewal does not
lose it and a job may take longer than the TTL; an instance
without it tries to acquire every LEASE_RETRY; the job runs once per
MAINTENANCE_PERIOD cluster-wide. A takeover after the holder dies therefore
takes at most LEASE_TTL + LEASE_RETRY.
"""

import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections

from labcore.stores import redis_client
from maintenance import jobs
from maintenance.fencing import StaleToken, fenced, highest_token
from maintenance.lease import Lease

logger = logging.getLogger(__name__)
LEASE_NAME = jobs.LEASE_NAME


class Scheduler(threading.Thread):
    def __init__(self, *, lease, period, retry, instance):
        super().__init__(name="maintenance-scheduler", daemon=True)
        self.lease = lease
        self.period = period
        self.retry = retry
        self.instance = instance
        self.holding = None
        # A renewal failed: act no more until one succeeds, and give the
        # lease up when the expiry we last confirmed has passed.
        self.renewal_failed = False
        # Inside a job, between deciding to act and writing: since when (monotonic), else None.
        self.working_since = None

    def run(self):
        next_renewal = 0.0
        # A daemon thread: it ends with its process, as the lease's TTL expects.
        while True:
            try:
                if self.holding is None:
                    self._try_to_acquire()
                    next_renewal = time.monotonic() + self.lease.ttl / 3
                elif time.monotonic() >= self.holding.valid_until:
                    logger.warning("maintenance: the lease expired before a renewal got through")
                    self.holding, self.renewal_failed = None, False
                elif self.renewal_failed or time.monotonic() >= next_renewal:
                    self._renew()
                    next_renewal = time.monotonic() + self.lease.ttl / 3
                if self.acting():
                    with self._renewing():
                        jobs.run_due_periods(token=self.holding.token, holder=self.lease.owner, period=self.period,
                                             instance=self.instance, still_holding=self.acting,
                                             working=self._set_working)
            except StaleToken as refused:
                logger.warning("%s; stepping down", refused)
                self._step_down()
            except Exception:
                logger.exception("maintenance: giving up the lease after an error")
                self._step_down()
            finally:
                close_old_connections()
            time.sleep(self.retry if self.holding is None else min(self.retry, self.lease.ttl / 6))

    def acting(self):
        """Act only while the lease we last confirmed has surely not expired and renewals work."""
        holding = self.holding  # the heartbeat may drop it meanwhile
        return holding is not None and not self.renewal_failed and time.monotonic() < holding.valid_until

    @contextmanager
    def _renewing(self):
        """Renew the lease every LEASE_TTL / 3 on a thread of its own while the block (the jobs) runs.

        A job can outlast the TTL (a catch-up after an outage, a slow
        database): renewed only between jobs, the lease would lapse half-way,
        another instance would take it, and the work would be refused and
        lost. A renewal that fails, or finds the lease gone, makes acting()
        false, which the jobs check before each step; a write already under
        way is judged by the fence, as ever. A renewal never revives a lease
        that expired in Redis: the script extends only a key still ours.
        """
        done = threading.Event()

        def beat():
            while not done.wait(self.lease.ttl / 3) and self.holding is not None:
                self._renew()

        heartbeat = threading.Thread(target=beat, name="maintenance-heartbeat", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            done.set()
            heartbeat.join()

    def _try_to_acquire(self):
        # Tokens start above the highest the database accepted, even if
        # Redis lost its counter (a restart without persistence).
        holding = self.lease.acquire(floor=highest_token(LEASE_NAME))
        if holding is None:
            return
        # Raise the fence at once: from now on, a write with an older token
        # is refused, even before this holder writes anything.
        with fenced(LEASE_NAME, holding.token, holder=self.lease.owner, instance=self.instance):
            pass
        self.holding, self.renewal_failed = holding, False
        logger.info("maintenance: acquired the lease with token %d", holding.token)

    def _renew(self):
        try:
            renewed = self.lease.renew(self.holding)
        except Exception as exc:
            if not self.renewal_failed:
                logger.warning("maintenance: renewal failed (%s); not acting until one succeeds", exc)
            self.renewal_failed = True
            return
        if not renewed:
            logger.warning("maintenance: the lease is no longer ours; stepping down")
            self.holding = None
        self.renewal_failed = False

    def _set_working(self, working):
        self.working_since = time.monotonic() if working else None

    def _step_down(self):
        self.holding, self.renewal_failed = None, False
        try:
            self.lease.release()
        except Exception as exc:
            logger.warning("maintenance: could not release the lease (it will expire): %s", exc)


_scheduler = None


def start():
    """Start this process's scheduler, once, if MAINTENANCE is on."""
    global _scheduler
    if _scheduler is not None or not settings.MAINTENANCE:
        return _scheduler
    lease = Lease(redis_client(), LEASE_NAME, ttl=settings.LEASE_TTL, instance=settings.INSTANCE_NAME)
    _scheduler = Scheduler(lease=lease, period=settings.MAINTENANCE_PERIOD, retry=settings.LEASE_RETRY,
                           instance=settings.INSTANCE_NAME)
    _scheduler.start()
    return _scheduler


def current():
    return _scheduler
