"""The maintenance lease: one holder at a time, takeover, fencing, and a Redis outage.

Each cluster test runs a real cluster with short timings: a 2 s lease renewed
every 0.67 s, acquisition retried every 0.25 s, one maintenance period per
second; the fence's own test uses a real Redis and the test database.
Nothing here assumes an idle machine: every wait is a bounded poll with a
generous deadline, and every claim about time is checked against times the
processes recorded themselves, not against how fast the test saw them.
"""

import json
import os
import signal
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from deploy.cluster import wait_for
from maintenance.fencing import StaleToken, fenced, highest_token
from maintenance.lease import Lease
from maintenance.models import RefusedWrite
from tests.http import Browser

TTL, RETRY, PERIOD = 2.0, 0.25, 1
TIMINGS = {"LEASE_TTL": TTL, "LEASE_RETRY": RETRY, "MAINTENANCE_PERIOD": PERIOD}


def lease(c, url):
    """/api/lease as url answers it, asked by the cluster's reader (it needs a login)."""
    request = urllib.request.Request(f"{url}/api/lease", headers=c.reader())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def holder_seen_by(c, url):
    return (lease(c, url)["lease"] or {}).get("instance")


def instance_url(c, name):
    return f"http://127.0.0.1:{c.instance(name)['port']}"


def holder(c):
    return holder_seen_by(c, c.url)


def database(c):
    return sqlite3.connect(c.state_dir / "site.sqlite3")


def runs(c):
    with database(c) as db:
        return db.execute(
            "SELECT CAST(strftime('%s', period_start) AS INTEGER), token, instance FROM maintenance_run "
            "ORDER BY period_start").fetchall()


def finish_times(c):
    """When each run was written, in epoch seconds (the instances' clock, which is this host's)."""
    with database(c) as db:
        rows = db.execute("SELECT finished_at FROM maintenance_run").fetchall()
    return [datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() for (text,) in rows]


def assert_contiguous(rows):
    starts = [row[0] for row in rows]
    assert starts == list(range(starts[0], starts[0] + PERIOD * len(starts), PERIOD)), starts


def test_one_holder_and_takeover_after_a_kill(cluster):
    c = cluster(instances=3, env=TIMINGS)
    first = wait_for(lambda: holder(c), timeout=30, what="a lease holder")
    # Only for a login: each answer asks Redis and the database.
    assert Browser().get(f"{c.url}/api/lease").status == 401
    page = Browser().get(f"{c.url}/lease/")
    assert (page.status, page.headers["Location"]) == (302, "/accounts/login/?next=/lease/")
    views = [lease(c, instance_url(c, name))["this_instance"] for name in ("app1", "app2", "app3")]
    assert [v["instance"] for v in views if v["holds"]] == [first]
    wait_for(lambda: len(runs(c)) >= 3, timeout=30, what="three maintenance runs")

    # Kill by signal rather than through `deploy kill`, so the moment is exact.
    pid = c.instance(first)["pid"]
    killed_at = time.time()
    os.killpg(pid, signal.SIGKILL)
    second = wait_for(lambda: (h := holder(c)) not in (None, first) and h, timeout=30, what="a new holder")
    # acquired_at is the new holder's own record of the moment, not when this test saw it.
    takeover = lease(c, c.url)["lease"]["acquired_at"] - killed_at
    assert 0 < takeover <= TTL + RETRY + 1.0, takeover
    wait_for(lambda: any(row[2] == second for row in runs(c)), timeout=30, what=f"a run by {second}")
    wait_for(lambda: runs(c)[-1][0] >= int(time.time()) - 2 * PERIOD, timeout=30, what="runs to catch up")
    rows = runs(c)
    assert_contiguous(rows)
    assert {row[2] for row in rows} == {first, second}
    print(f"takeover after kill: {takeover:.2f} s")


def pause_mid_job(c, name, url, work_seconds, attempts=10):
    """SIGSTOP an instance while it is provably between deciding to write and writing.

    What the test saw ("working") is already old when the signal goes out:
    on a busy machine the job may have written meanwhile, and then there is
    nothing stale left to refuse. So a pause counts only if it was sent
    before the job's stretch could have ended, judged from the instance's
    own working_for; otherwise resume and try the next job.
    """
    pid = c.instance(name)["pid"]

    def stretch_began():
        asked = time.monotonic()
        me = lease(c, url)["this_instance"]
        # The instance answered after `asked`, so its stretch began no earlier than this.
        return me["working"] and asked - me["working_for"]

    for _ in range(attempts):
        began = wait_for(stretch_began, timeout=30, what=f"{name} mid-job")
        os.killpg(pid, signal.SIGSTOP)
        if time.monotonic() < began + work_seconds - 0.1:
            return pid
        os.killpg(pid, signal.SIGCONT)
        wait_for(lambda: not lease(c, url)["this_instance"]["working"], timeout=30, what=f"{name}'s job to end")
    raise AssertionError(f"no pause of {name} landed inside a job in {attempts} tries")


def test_a_paused_holder_is_fenced_off(cluster):
    work = 1
    c = cluster(instances=2, env={**TIMINGS, "MAINTENANCE_PERIOD": 2, "MAINTENANCE_WORK_SECONDS": work})
    first = wait_for(lambda: holder(c), timeout=30, what="a lease holder")
    second = next(name for name in ("app1", "app2") if name != first)
    first_url, second_url = instance_url(c, first), instance_url(c, second)
    pid = pause_mid_job(c, first, first_url, work)
    try:
        old_token = max(row[1] for row in runs(c)) if runs(c) else None
        wait_for(lambda: holder_seen_by(c, second_url) == second, timeout=30, what=f"{second} to take over")
        new_token = lease(c, second_url)["lease"]["token"]
        wait_for(lambda: any(row[1] == new_token for row in runs(c)), timeout=30, what=f"a run by {second}")
    finally:
        os.killpg(pid, signal.SIGCONT)

    refused = wait_for(lambda: lease(c, second_url)["last_refused_write"], timeout=30,
                       what="the stale write's refusal")
    assert refused["instance"] == first and refused["token"] < new_token
    wait_for(lambda: not lease(c, first_url)["this_instance"]["holds"], timeout=30, what=f"{first} to step down")
    rows = runs(c)
    takeover_index = next(i for i, row in enumerate(rows) if row[1] == new_token)
    assert all(row[1] == new_token for row in rows[takeover_index:]), "a stale write landed after the takeover"
    assert old_token is None or all(row[1] <= new_token for row in rows)


def test_a_redis_outage_stops_all_acting_until_it_is_back(cluster):
    c = cluster(instances=2, env=TIMINGS)
    first = wait_for(lambda: holder(c), timeout=30, what="a lease holder")
    first_url = instance_url(c, first)
    redis_pid = next(s["pid"] for s in c.status()["stores"] if s["name"] == "redis1")

    os.killpg(redis_pid, signal.SIGSTOP)
    paused_at = time.time()
    try:
        wait_for(lambda: not lease(c, first_url)["this_instance"]["acting"], timeout=30, what=f"{first} to stop acting")
        wait_for(lambda: not lease(c, first_url)["this_instance"]["holds"], timeout=30,
                 what=f"{first} to give the lease up")
        before = len(runs(c))
        watch_until = time.monotonic() + 3 * PERIOD
        while time.monotonic() < watch_until:
            assert len(runs(c)) == before, "an instance acted without the lease"
            time.sleep(0.1)
    finally:
        os.killpg(redis_pid, signal.SIGCONT)
    resumed_at = time.time()
    # The holder may finish a write it began before the pause, but nothing
    # after its lease, confirmed before the pause, could have expired.
    late = [t for t in finish_times(c) if paused_at + TTL <= t <= resumed_at]
    assert not late, f"runs written without a valid lease while Redis was paused: {late}"

    wait_for(lambda: holder(c), timeout=30, what="a holder after Redis is back")
    wait_for(lambda: runs(c)[-1][0] >= int(time.time()) - 2 * PERIOD, timeout=30, what="runs to catch up")
    assert_contiguous(runs(c))


def test_an_equal_token_from_another_holder_is_refused(redis_db, db):
    # Two schedulers' leases on a real Redis and the real database.
    first, second = (Lease(redis_db, "fence-test", ttl=TTL, instance=name) for name in ("app1", "app2"))
    holding = first.acquire(floor=highest_token("fence-test"))
    # An asynchronous failover: the new primary never got the lease, and its
    # counter is one behind; the first holder has not raised the fence yet.
    redis_db.delete(first.keys[0])
    redis_db.decr(first.keys[1])
    taken = second.acquire(floor=highest_token("fence-test"))
    assert taken.token == holding.token

    with fenced("fence-test", holding.token, holder=first.owner, instance="app1"):
        pass
    with pytest.raises(StaleToken), fenced("fence-test", taken.token, holder=second.owner, instance="app2"):
        pytest.fail("the second holder of an equal token wrote")
    with fenced("fence-test", holding.token, holder=first.owner, instance="app1"):
        pass  # its own token, again: every write of one holding carries it
    assert list(RefusedWrite.objects.values_list("token", "instance")) == [(holding.token, "app2")]
    # A new holder needs a strictly greater token, which a new acquisition gives.
    second.release()
    newer = second.acquire(floor=highest_token("fence-test"))
    with fenced("fence-test", newer.token, holder=second.owner, instance="app2"):
        pass
    assert highest_token("fence-test") == newer.token > holding.token


def test_a_job_longer_than_the_lease_completes_under_one_token(cluster):
    # Each period's job takes 1.5 TTLs: renewed only between jobs, the lease
    # would lapse half-way, the other instance would take it, and the job's
    # write would be refused.
    work = 1.5 * TTL
    c = cluster(instances=2, env={**TIMINGS, "MAINTENANCE_PERIOD": 2, "MAINTENANCE_WORK_SECONDS": work})
    first = wait_for(lambda: holder(c), timeout=30, what="a lease holder")
    token = lease(c, c.url)["lease"]["token"]
    wait_for(lambda: len(runs(c)) >= 2 or lease(c, c.url)["last_refused_write"], timeout=60,
             what="two runs or a refused write")
    state = lease(c, c.url)
    assert state["last_refused_write"] is None, state["last_refused_write"]
    assert {(row[1], row[2]) for row in runs(c)} == {(token, first)}
    assert (state["lease"]["instance"], state["lease"]["token"]) == (first, token)
