"""The control room's load against a real cluster: its counters agree with what every user finds afterwards."""

import time

import requests

from control.live import LiveHistory
from control.load import Load
from loadtest.harness import checkers
from loadtest.harness.client import ROOM
from loadtest.harness.load import SITE_ENV
from loadtest.harness.site import messages_path

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


def test_the_load_posts_and_polls_and_counts_each_acknowledged_post_as_a_write_read_back(cluster, tmp_path):
    c = cluster(instances=2, sessions="redis", presence="redis", env=SITE_ENV)
    history = LiveHistory(tmp_path / "run" / "history.jsonl", experiment="control", command="test")
    load = Load(history, url=c.url, state_dir=c.state_dir)
    try:
        load.resize(3)
        # Every user posts every 2 s: wait for posts by two users, each followed by polls of the other users.
        wait_until(lambda: len({op["who"] for op in _ops(history, "post")}) >= 2 and
                   min(op["invoked"] for op in _ops(history, "poll")[-3:]) > _ops(history, "post")[1]["completed"],
                   "posts by two users, and polls after them")
        figures = load.stop()
    finally:
        load.stop()
        history.close()
    events = history.events()
    writes, posts = checkers.ops(events, "write", "ok"), checkers.ops(events, "post", "ok")
    assert figures["writes_acked"] == len(writes) + len(posts) and writes
    assert figures["writes_lost"] == 0, "Redis sessions, nobody killed: nothing acknowledged is lost"
    delivered = {message for poll in checkers.ops(events, "poll", "ok") for message in poll["value"]["ids"]}
    assert {post["value"]["id"] for post in posts} & delivered, "the pollers received the posts"
    assert (figures["messages_missed"], figures["messages_seen_twice"]) == (0, 0)
    # Read the room back independently, as another user: every acknowledged post is there, with its id.
    stored, after = {}, 0
    while page := requests.get(f"{c.url}{messages_path(ROOM, after=after, limit=200)}", headers=c.reader(),
                               timeout=10).json()["messages"]:
        stored.update((m["client_id"], m["id"]) for m in page)
        after = page[-1]["id"]
    kept = [post for post in posts if stored.get(post["value"]["client_id"]) == post["value"]["id"]]
    assert len(kept) == len(posts) == figures["writes_acked"] - len(writes)


def _ops(history, what):
    return checkers.ops(history.events(), what, "ok")


def _read_since(history, moment):
    """The users with a read invoked since `moment` that found their session or found it gone."""
    return {op["who"] for op in history.events() if op["type"] == "op" and op["what"] == "read"
            and op["invoked"] >= moment and (op["outcome"] == "ok" or op["refusal"] == "401")}
