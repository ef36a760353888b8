"""Every committed message reaches every poller exactly once, in order, on PostgreSQL too.

PostgreSQL hands out ids when a row is inserted, and transactions commit in
any order; a poller holding a cursor (the highest id it has seen) would
skip a message whose lower id committed after a higher one. Posts to one
room are therefore serialised on the room's row lock (chat/services.py).
"""

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from deploy.cluster import wait_for
from tests.http import Browser
from tests.servers import postgres_server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


@pytest.fixture
def postgres():
    server = postgres_server().start()
    yield server.url
    server.stop()


def test_a_post_waits_for_an_earlier_open_one_so_no_poll_skips_it(postgres, tmp_path):
    env = {**os.environ, "DATABASE_URL": postgres, "DJANGO_SETTINGS_MODULE": "labsite.settings",
           "SECRET_KEY": "message-order-test", "STATE_DIR": str(tmp_path)}
    env.pop("DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "tests.held_transaction"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    saw = json.loads(done.stdout.splitlines()[-1])
    assert saw["first_poll"] == [], "a poll returned B while A, with a lower id, was still open"
    assert saw["b_waited_for_a"], "B committed while A held the room"
    assert saw["seen"] == ["A", "B"]


@pytest.mark.timeout(300)
def test_a_poller_sees_every_acknowledged_message_once_across_instances(cluster):
    site = cluster(instances=3, sessions="db", presence="memory", db="postgres",
                   env={"PASSWORD_ITERATIONS": "1000"}).url
    posters = [Browser() for _ in range(6)]
    for n, poster in enumerate(posters):
        assert poster.sign_up(site, f"poster{n}", PASSWORD).status == 302
    reader = Browser()
    assert reader.sign_up(site, "reader", PASSWORD).status == 302

    acknowledged, seen, problems = [], [], []
    posting_done = threading.Event()

    def post_many(poster):
        for _ in range(20):
            sent = poster.post(f"{site}/api/rooms/lobby/messages",
                               json_body={"text": "hi", "client_id": str(uuid.uuid4())})
            if sent.status != 201:
                problems.append(f"post answered {sent.status}")
                return
            acknowledged.append(sent.json()["id"])

    cursor = 0

    def poll():
        nonlocal cursor
        page = reader.get(f"{site}/api/rooms/lobby/messages?after={cursor}&limit=200")
        if page.status != 200:
            problems.append(f"poll answered {page.status}")
            return
        seen.extend(m["id"] for m in page.json()["messages"])
        cursor = page.json()["cursor"]

    def follow():
        while not posting_done.is_set():
            poll()

    threads = [threading.Thread(target=post_many, args=(p,)) for p in posters]
    poller = threading.Thread(target=follow)
    poller.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    posting_done.set()
    poller.join(60)
    assert not problems, problems[:5]
    wait_for(lambda: poll() or cursor >= max(acknowledged), timeout=30, what="the poller to catch up")

    assert len(acknowledged) == 120
    assert sorted(seen) == seen, "the poller saw ids out of order"
    assert len(set(seen)) == len(seen), "the poller saw a message twice"
    assert set(seen) == set(acknowledged), f"never seen: {sorted(set(acknowledged) - set(seen))}"
