"""The maintenance lease: one holder at a time, takeover, fencing, and a Redis outage.

Each test runs a real cluster with short timings: a 2 s lease renewed every
0.67 s, acquisition retried every 0.25 s, one maintenance period per second.
"""

import json
import os
import signal
import sqlite3
import time
import urllib.request

from deploy.processes import wait_for

TTL, RETRY, PERIOD = 2.0, 0.25, 1
TIMINGS = {"LEASE_TTL": TTL, "LEASE_RETRY": RETRY, "MAINTENANCE_PERIOD": PERIOD}


def lease(url):
    with urllib.request.urlopen(f"{url}/api/lease", timeout=5) as response:
        return json.load(response)


def holder_seen_by(url):
    return (lease(url)["lease"] or {}).get("instance")


def instance_url(c, name):
    return f"http://127.0.0.1:{c.instance(name)['port']}"


def holder(c):
    return holder_seen_by(c.url)


def database(c):
    return sqlite3.connect(c.state_dir / "site.sqlite3")


def runs(c):
    with database(c) as db:
        return db.execute(
            "SELECT CAST(strftime('%s', period_start) AS INTEGER), token, instance FROM maintenance_run "
            "ORDER BY period_start").fetchall()


def assert_contiguous(rows):
    starts = [row[0] for row in rows]
    assert starts == list(range(starts[0], starts[0] + PERIOD * len(starts), PERIOD)), starts


def test_one_holder_and_takeover_after_a_kill(cluster):
    c = cluster(instances=3, env=TIMINGS)
    first = wait_for(lambda: holder(c), timeout=10, what="a lease holder")
    views = [lease(instance_url(c, name))["this_instance"] for name in ("app1", "app2", "app3")]
    assert [v["instance"] for v in views if v["holds"]] == [first]
    wait_for(lambda: len(runs(c)) >= 3, timeout=10, what="three maintenance runs")

    killed_at = time.monotonic()
    c.run("kill", first)
    second = wait_for(lambda: (h := holder(c)) not in (None, first) and h, timeout=10, what="a new holder")
    takeover = time.monotonic() - killed_at
    assert takeover <= TTL + RETRY + 0.5, takeover
    wait_for(lambda: any(row[2] == second for row in runs(c)), timeout=10, what=f"a run by {second}")
    wait_for(lambda: runs(c)[-1][0] >= int(time.time()) - 2 * PERIOD, timeout=10, what="runs to catch up")
    rows = runs(c)
    assert_contiguous(rows)
    assert {row[2] for row in rows} == {first, second}
    print(f"takeover after kill: {takeover:.2f} s")


def test_a_paused_holder_is_fenced_off(cluster):
    c = cluster(instances=2, env={**TIMINGS, "MAINTENANCE_PERIOD": 2, "MAINTENANCE_WORK_SECONDS": 1})
    first = wait_for(lambda: holder(c), timeout=10, what="a lease holder")
    second = next(name for name in ("app1", "app2") if name != first)
    first_url, second_url = instance_url(c, first), instance_url(c, second)
    wait_for(lambda: lease(first_url)["this_instance"]["working"], timeout=10, what=f"{first} mid-job")
    os.killpg(c.instance(first)["pid"], signal.SIGSTOP)
    try:
        old_token = max(row[1] for row in runs(c)) if runs(c) else None
        wait_for(lambda: holder_seen_by(second_url) == second, timeout=10, what=f"{second} to take over")
        new_token = lease(second_url)["lease"]["token"]
        wait_for(lambda: any(row[1] == new_token for row in runs(c)), timeout=10, what=f"a run by {second}")
    finally:
        os.killpg(c.instance(first)["pid"], signal.SIGCONT)

    refused = wait_for(lambda: lease(second_url)["last_refused_write"], timeout=10,
                       what="the stale write's refusal")
    assert refused["instance"] == first and refused["token"] < new_token
    wait_for(lambda: not lease(first_url)["this_instance"]["holds"] or None, timeout=5, what=f"{first} to step down")
    rows = runs(c)
    takeover_index = next(i for i, row in enumerate(rows) if row[1] == new_token)
    assert all(row[1] == new_token for row in rows[takeover_index:]), "a stale write landed after the takeover"
    assert old_token is None or all(row[1] <= new_token for row in rows)


def test_a_redis_outage_stops_all_acting_until_it_is_back(cluster):
    c = cluster(instances=2, env=TIMINGS)
    first = wait_for(lambda: holder(c), timeout=10, what="a lease holder")
    first_url = instance_url(c, first)
    redis_pid = next(s["pid"] for s in c.status()["stores"] if s["name"] == "redis")

    os.killpg(redis_pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        wait_for(lambda: not lease(first_url)["this_instance"]["acting"] or None, timeout=TTL + 1,
                 what=f"{first} to stop acting")
        assert time.monotonic() - stopped_at < TTL
        wait_for(lambda: not lease(first_url)["this_instance"]["holds"] or None, timeout=TTL + 1,
                 what=f"{first} to give the lease up")
        before = len(runs(c))
        watch_until = time.monotonic() + 3 * PERIOD
        while time.monotonic() < watch_until:
            assert len(runs(c)) == before, "an instance acted without the lease"
            time.sleep(0.1)
    finally:
        os.killpg(redis_pid, signal.SIGCONT)

    wait_for(lambda: holder(c), timeout=10, what="a holder after Redis is back")
    wait_for(lambda: runs(c)[-1][0] >= int(time.time()) - 2 * PERIOD, timeout=10, what="runs to catch up")
    assert_contiguous(runs(c))

