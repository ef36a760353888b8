"""A store that hangs costs a request at most one STORE_TIMEOUT, and never starves the instance.

Redis is paused with SIGSTOP (its socket accepts, nothing answers) while a
client sends requests straight to one instance at a fixed rate, whether or
not earlier ones were answered, as users do. Without the circuit breaker
every request waited out the timeout, eight threads served about ten a
second, and the rest queued behind them.
"""

import os
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from deploy.cluster import wait_for
from tests.http import Browser

PASSWORD = "correct horse battery"
STORE_TIMEOUT = 0.5  # the site's default
BREAKER_INTERVAL = 1.0  # the site's default
RATE, SECONDS = 100, 10  # requests a second, for this long
# A request pays at most one STORE_TIMEOUT (the one request per interval
# that tries the store again, or one already waiting when it failed), plus
# one breaker interval of margin, plus the slowest answer the same load got
# with the store up: on a busy machine that is what a request costs anyway.
BOUND = STORE_TIMEOUT + BREAKER_INTERVAL


def open_loop(call, *, rate, seconds):
    """Call call() `rate` times a second for `seconds`, each on time whatever the others do.

    Return [(status, seconds from sending to the answer, seconds late in sending)].
    """
    results, lock = [], threading.Lock()
    started = time.monotonic() + 0.2

    def one(due):
        time.sleep(max(0.0, due - time.monotonic()))  # pacing, not a wait for a condition
        sent = time.monotonic()
        try:
            status = call().status
        except OSError as exc:
            status = type(exc).__name__
        with lock:
            results.append((status, time.monotonic() - sent, sent - due))

    with ThreadPoolExecutor(max_workers=64) as pool:
        for n in range(rate * seconds):
            pool.submit(one, started + n / rate)
    return results


def summary(results):
    times = sorted(elapsed for _, elapsed, _ in results)
    statuses = {}
    for status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return (f"{len(results)} requests, statuses {statuses}, p50 {statistics.median(times) * 1000:.1f} ms, "
            f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms, "
            f"{sum(t > STORE_TIMEOUT / 2 for t in times)} over {STORE_TIMEOUT / 2:g} s, "
            f"latest send {max(late for _, _, late in results) * 1000:.0f} ms after its time")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("sessions", "method", "path", "paused_status"), [
    ("redis", "GET", "/api/me", 503),
    # The session falls back to the database; presence needs Redis.
    ("cached_db", "POST", "/api/rooms/lobby/presence", 503),
])
def test_a_paused_redis_gets_fast_503s_at_the_rate_requests_come(cluster, sessions, method, path, paused_status):
    c = cluster(instances=1, sessions=sessions, presence="redis")
    site = f"http://127.0.0.1:{c.instance('app1')['port']}"
    ada = Browser()
    assert ada.sign_up(site, "ada", PASSWORD).status == 302
    call = lambda: ada.request(method, f"{site}{path}")  # noqa: E731
    assert call().status == 200
    redis_pid = next(s["pid"] for s in c.status()["stores"] if s["kind"] == "redis")
    healthy = open_loop(call, rate=RATE, seconds=2)
    print(f"\n{sessions} {method} {path}, Redis up, {RATE}/s for 2 s: {summary(healthy)}")
    bound = BOUND + max(elapsed for _, elapsed, _ in healthy)

    os.killpg(redis_pid, signal.SIGSTOP)
    try:
        results = open_loop(call, rate=RATE, seconds=SECONDS)
    finally:
        os.killpg(redis_pid, signal.SIGCONT)
    print(f"\n{sessions} {method} {path}, Redis paused, {RATE}/s for {SECONDS} s: {summary(results)}")

    assert {status for status, _, _ in results} == {paused_status}
    slowest = max(elapsed for _, elapsed, _ in results)
    assert slowest < bound, f"a request took {slowest:.2f} s; the bound is {bound:.2f} s"
    # Serving again: the next request after the interval tries Redis, and it answers.
    wait_for(lambda: call().status == 200, timeout=BREAKER_INTERVAL + 30, what="the instance to serve again")
