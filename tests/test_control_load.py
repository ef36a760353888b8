"""The control room's load against a real cluster: its counters agree with what every user finds afterwards."""

import time

from control.live import LiveHistory
from control.load import Load
from loadtest.harness.load import SITE_ENV

SOON = 30  # seconds, for bounded polls on a busy machine


def wait_until(condition, what, seconds=SOON):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.1)


def test_sessions_lost_agree_with_every_users_own_check(cluster, tmp_path):
    c = cluster(instances=2, sessions="memory", presence="memory", lb="sticky", env=SITE_ENV)
    history = LiveHistory(tmp_path / "run" / "history.jsonl", experiment="control", command="test")
    load = Load(history, url=c.url, state_dir=c.state_dir)
    try:
        load.resize(8)
        wait_until(lambda: len(history.tally.logged_in) == 8, "8 users logged in")
        c.run("kill", "app1")
        killed = history.now()
        # Every user has read its session since the kill: each knows whether it still has one.
        wait_until(lambda: _read_since(history, killed) == {user.name for user in load.everyone},
                   "a read by every user after the kill")
        live = history.figures()[0]["sessions_lost"]
        figures = load.stop()
    finally:
        load.stop()
        history.close()
    answers = {user.name: user.site.http.get(f"{c.url}/api/me", timeout=10).status_code for user in load.everyone}
    logged_out = [name for name, status in answers.items() if status != 200]
    assert 0 < len(logged_out) < 8, answers
    assert figures["sessions_lost"] == len(logged_out) == live
    assert history.figures()[0]["sessions_lost"] == len(logged_out)


def _read_since(history, moment):
    """The users with a read invoked since `moment` that found their session or found it gone."""
    return {op["who"] for op in history.events() if op["type"] == "op" and op["what"] == "read"
            and op["invoked"] >= moment and (op["outcome"] == "ok" or op["refusal"] == "401")}
