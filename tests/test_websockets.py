"""The chat over a WebSocket, through real uvicorn processes, a real Redis and a shared SQLite database.

Two instances per channel layer, each its own uvicorn process on a free
loopback port: a socket on each, straight to its port. The clients are
`websockets`' synchronous ones, as a non-browser client would be. The
servers run without uvicorn's own frame limit (--ws-max-size), so the
site's (chat/consumers.py) is the one under test.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from channels_redis.utils import create_pool
from playwright.sync_api import expect, sync_playwright
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from deploy.cluster import free_port, port_open, start_time, stop, wait_for
from labcore.config import LAYER_CONNECTIONS, channel_layer_settings
from labcore.connections import RedisTarget
from labcore.registry import ConfigError
from tests.http import Browser
from tests.servers import redis_server
from tests.test_browser import CHROMIUM, FLAGS, SOON, say, sign_up_and_join

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
DEADLINE = 20  # seconds a frame may take on a busy machine


class Instances:
    """uvicorn processes sharing one SECRET_KEY, database and Redis."""

    def __init__(self, tmp, redis_url, **env):
        self.env = {**os.environ, "SECRET_KEY": "websocket-tests-key", "SESSION_STORE": "redis",
                    "PRESENCE_STORE": "redis", "REDIS_URL": redis_url, "STATE_DIR": str(tmp),
                    "DJANGO_SETTINGS_MODULE": "labsite.settings", "PASSWORD_ITERATIONS": "1000", **env}
        self.env.pop("DEBUG", None)
        self.tmp = tmp
        self.records = []
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True,
                       timeout=120)

    def start(self, name):
        port = free_port()
        with open(self.tmp / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "labsite.asgi:application", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log"],
                cwd=ROOT, env={**self.env, "INSTANCE_NAME": name}, stdout=log, stderr=log, start_new_session=True)
        self.records.append({"pid": process.pid, "started": start_time(process.pid)})
        wait_for(lambda: port_open(port), timeout=60, what=f"{name} on port {port}")
        return f"127.0.0.1:{port}"

    def stop(self):
        for record in self.records:
            stop(record, sig=signal.SIGKILL)


@pytest.fixture(scope="module")
def layers(tmp_path_factory, redis_service):
    """Two instances per channel layer, started once for the module: {"memory": (a, b), "redis": (a, b)}."""
    started, pairs = [], {}
    try:
        for number, layer in enumerate(("memory", "redis")):
            base = redis_service.url.rpartition("/")[0]
            instances = Instances(tmp_path_factory.mktemp(layer), f"{base}/{4 + number}", CHANNEL_LAYER=layer)
            started.append(instances)
            pairs[layer] = (instances.start(f"{layer}1"), instances.start(f"{layer}2"))
        yield pairs
    finally:
        for instances in started:
            instances.stop()


def user(host, name=None):
    """A new user signed up on host; returns its session cookie header."""
    browser = Browser()
    name = name or f"u{uuid.uuid4().hex[:10]}"
    assert browser.sign_up(f"http://{host}", name, PASSWORD).status == 302
    return name, f"sessionid={browser.cookie('sessionid')}"


def socket(host, room, cookie=None, *, after=None, origin=None, headers=()):
    query = f"?after={after}" if after is not None else ""
    extra = ([("Cookie", cookie)] if cookie else []) + list(headers)
    return connect(f"ws://{host}/ws/rooms/{room}/{query}", origin=origin or f"http://{host}",
                   additional_headers=extra, open_timeout=DEADLINE, close_timeout=2, max_size=None)


def frame(ws, kind=None):
    """The next frame (of `kind`, skipping others), within DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        got = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if kind is None or got["type"] == kind:
            return got


def online_until(ws, wanted):
    """Read presence frames until one lists `wanted`; True then, TimeoutError after DEADLINE.

    Each socket announces itself once it has joined, after its handshake: a
    socket opened just before another may be listed only after it.
    """
    deadline = time.monotonic() + DEADLINE
    while frame(ws, "presence")["online"] != wanted:
        assert time.monotonic() < deadline, f"no presence frame listed {wanted}"
    return True


def first_of(ws, *kinds):
    """The first frame of each kind, in whatever order they come; frames of other kinds are skipped."""
    got = {}
    while set(got) != set(kinds):
        one = frame(ws)
        if one["type"] in kinds:
            got.setdefault(one["type"], one)
    return got


def post(ws, text, client_id=None):
    client_id = client_id or str(uuid.uuid4())
    ws.send(json.dumps({"type": "post", "text": text, "client_id": client_id}))
    return client_id


def room():
    return f"r{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("layer", ["redis", "memory"])
def test_a_post_reaches_the_other_instance_only_through_redis(layers, layer):
    one, two = layers[layer]
    (ada, ada_cookie), (bob, bob_cookie) = user(one), user(two)
    lobby = room()
    with socket(one, lobby, ada_cookie) as a, socket(two, lobby, bob_cookie) as b:
        # Presence by open socket: with the in-memory layer each instance lists only its own.
        assert online_until(b, sorted([ada, bob]) if layer == "redis" else [bob])
        sent = post(a, "hello from one")
        # The sender gets its ack and, like every member, the message (the ack usually first).
        got = first_of(a, "ack", "message")
        mine = got["message"]
        assert (mine["text"], mine["author"], mine["client_id"], mine["prev"]) == ("hello from one", ada, sent, None)
        assert got["ack"] == {"type": "ack", "client_id": sent, "id": mine["id"]}
        post(b, "hello from two")
        seen = frame(b, "message")
        if layer == "redis":
            assert seen["id"] == mine["id"]
            seen = frame(b, "message")
        # With the in-memory layer, b's next message is its own, whose prev names the one it never got: a gap.
        assert (seen["text"], seen["prev"]) == ("hello from two", mine["id"])


def test_a_killed_instance_s_sockets_leave_the_online_list_within_the_expiry(tmp_path, redis_service):
    """Redis layer, SOCKET_EXPIRY 3 s: the socket's entry is soft state, refreshed only while its process lives."""
    instances = Instances(tmp_path, redis_service.url.rpartition("/")[0] + "/6", CHANNEL_LAYER="redis",
                          SOCKET_EXPIRY="3")
    try:
        one, two = instances.start("app1"), instances.start("app2")
        (ada, ada_cookie), (bob, bob_cookie) = user(one), user(two)
        lobby = room()
        with socket(one, lobby, ada_cookie), socket(two, lobby, bob_cookie) as b:
            assert online_until(b, sorted([ada, bob]))
            stop(instances.records[0], sig=signal.SIGKILL)  # no goodbye from app1: its entry must lapse
            killed_at = time.monotonic()
            assert online_until(b, [bob])
            assert time.monotonic() - killed_at < 3 + 1 + DEADLINE
    finally:
        instances.stop()


@pytest.mark.parametrize("layer", ["redis", "memory"])
def test_concurrent_posts_on_two_instances_reach_a_third_client_exactly_once(layers, layer):
    """With the in-memory layer the third client misses the other instance's posts and closes its gaps by resuming."""
    one, two = layers[layer]
    _, cookie = user(one)
    lobby = room()
    acked = []

    def poster(host, count):
        with socket(host, lobby, cookie) as ws:
            for number in range(count):
                sent = post(ws, f"{host} {number}")
                acked.append(frame_ack(ws, sent))

    with socket(two, lobby, cookie) as reader:
        frame(reader, "presence")
        threads = [threading.Thread(target=poster, args=(host, 10)) for host in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # A last post on the reader's own instance: any earlier gap shows by its prev.
        with socket(two, lobby, cookie) as closer:
            acked.append(frame_ack(closer, post(closer, "the end")))
        held, resumes = read_until(reader, two, lobby, cookie, set(acked))
    assert len(acked) == 21 and sorted(held) == sorted(acked)
    if layer == "memory":
        assert resumes >= 1  # the in-memory layer never carried the other instance's posts


def frame_ack(ws, client_id):
    while True:
        got = frame(ws)
        if got["type"] == "ack":
            assert got["client_id"] == client_id
            return got["id"]


def read_until(ws, host, lobby, cookie, wanted):
    """A gap-closing client: accept a message only if its prev is the last id held, else resume from there.

    Returns (the ids held, in the order accepted, each once; the number of resumes).
    """
    held, last, resumes = [], None, 0
    deadline = time.monotonic() + 60
    with ExitStack() as sockets:
        while not wanted <= set(held):
            assert time.monotonic() < deadline, f"still missing {sorted(wanted - set(held))}"
            got = frame(ws, "message")
            if got["prev"] == last:
                assert got["id"] not in held, f"message {got['id']} delivered twice"
                held.append(got["id"])
                last = got["id"]
            elif last is None or got["id"] > last:
                ws.close()
                resumes += 1
                ws = sockets.enter_context(socket(host, lobby, cookie, after=last or 0))
    return held, resumes


def test_resume_replays_from_the_database_then_live_each_once(layers):
    one, two = layers["redis"]
    _, cookie = user(one)
    lobby = room()
    with socket(one, lobby, cookie) as ws:
        ids = [frame_ack(ws, post(ws, f"m{number}")) for number in range(5)]
    with socket(two, lobby, cookie, after=ids[1]) as ws:
        replayed = [frame(ws, "message") for _ in range(3)]
        assert [m["id"] for m in replayed] == ids[2:]
        assert [m["prev"] for m in replayed] == ids[1:4]
        live = frame_ack(ws, post(ws, "live"))
        got = frame(ws, "message")
        assert (got["id"], got["prev"]) == (live, ids[4])


def test_a_replayed_post_is_acknowledged_with_the_first_id_and_stored_once(layers):
    one, two = layers["redis"]
    _, cookie = user(one)
    lobby = room()
    with socket(one, lobby, cookie) as a, socket(two, lobby, cookie) as b:
        sent = post(a, "once")
        first = frame_ack(a, sent)
        post(b, "once", sent)  # the same post, replayed on the other instance
        got = first_of(b, "message", "ack")  # the original through the layer, and the replay's ack
        assert (got["message"]["id"], got["ack"]) == (first, {"type": "ack", "client_id": sent, "id": first})
        post(b, "after")
        following = frame(b, "message")
        assert following["prev"] == first  # nothing was stored between them
    with socket(one, lobby, cookie, after=0) as c:
        assert [frame(c, "message")["text"] for _ in range(2)] == ["once", "after"]


BAD_FRAMES = [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"type": "shout", "text": "hi"}), "unknown type"),
    (json.dumps({"type": "post", "client_id": str(uuid.uuid4())}), "'text' is required"),
    (json.dumps({"type": "post", "text": 5, "client_id": str(uuid.uuid4())}), "'text' is required"),
    (json.dumps({"type": "post", "text": "hi"}), "'client_id' is required"),
    (json.dumps({"type": "post", "text": "hi", "client_id": "nope"}), "not a UUID"),
    (json.dumps({"type": "post", "text": "x" * 2001, "client_id": str(uuid.uuid4())}), "the limit is 2000"),
    (b"\x00binary", "JSON text"),
]


def test_every_bad_frame_gets_an_error_and_the_socket_stays_open(layers):
    one, _ = layers["redis"]
    _, cookie = user(one)
    lobby = room()
    with socket(one, lobby, cookie) as ws:
        frame(ws, "presence")
        for bad, said in BAD_FRAMES:
            ws.send(bad)
            error = frame(ws, "error")
            assert said in error["error"], (bad, error)
        # Still open, and still posting.
        sent = post(ws, "still here")
        assert frame(ws, "message")["client_id"] == sent
        ws.send(json.dumps({"type": "post", "text": "x" * (64 * 1024), "client_id": str(uuid.uuid4())}))
        with pytest.raises(ConnectionClosed) as closed:
            frame(ws)
        assert closed.value.rcvd.code == 1009


def test_unauthenticated_and_cross_origin_handshakes_are_refused(layers):
    one, _ = layers["redis"]
    _, cookie = user(one)
    for cookie_header, origin in [(None, None), ("sessionid=forged", None), (cookie, "http://evil.example"),
                                  (cookie, "http://127.0.0.1.evil.example")]:
        with pytest.raises(InvalidStatus) as refused:
            socket(one, room(), cookie_header, origin=origin)
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        socket(one, room(), headers=[("Authorization", "Bearer forged")])


def test_a_bearer_token_opens_a_socket(layers):
    one, _ = layers["redis"]
    browser = Browser()
    assert browser.sign_up(f"http://{one}", name := f"u{uuid.uuid4().hex[:10]}", PASSWORD).status == 302
    token = browser.post(f"http://{one}/api/token", json_body={"username": name, "password": PASSWORD})
    assert token.status == 200, token.body
    with socket(one, room(), headers=[("Authorization", f"Bearer {token.json()['token']}")]) as ws:
        assert frame(ws, "presence")["online"] == [name]


def opens(host, cookie):
    try:
        with socket(host, room(), cookie) as ws:
            return frame(ws, "presence")
    except ConnectionClosed:
        return None


def test_a_session_store_down_refuses_the_handshake_naming_it(tmp_path):
    """Redis paused: the socket is closed with 4503 naming Redis, never opened as an anonymous user (4401/403)."""
    store = redis_server().start()
    instances = Instances(tmp_path, store.url, CHANNEL_LAYER="memory", PRESENCE_STORE="memory")
    try:
        host = instances.start("app1")
        _, cookie = user(host)
        store.pause()
        try:
            assert closed_with(host, cookie) == (4503, "redis is unavailable")
        finally:
            store.resume()
        # Once Redis answers again (and the breaker lets a call through), the same login opens a socket.
        wait_for(lambda: opens(host, cookie), timeout=DEADLINE, what="a socket once Redis is back")
    finally:
        instances.stop()
        store.stop()


def test_a_channel_layer_down_refuses_the_handshake_naming_it(tmp_path):
    """Sessions in the cookie, the Redis layer's server killed: 4503 naming Redis, not a crashed consumer."""
    store = redis_server().start()
    instances = Instances(tmp_path, store.url, CHANNEL_LAYER="redis", SESSION_STORE="signed_cookies",
                          PRESENCE_STORE="memory")
    try:
        host = instances.start("app1")
        _, cookie = user(host)
        store.stop()
        assert closed_with(host, cookie) == (4503, "redis is unavailable")
    finally:
        instances.stop()
        store.stop()


def closed_with(host, cookie):
    with socket(host, room(), cookie) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=DEADLINE)
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_the_channel_layer_follows_presence_and_refuses_what_it_cannot_use():
    target = RedisTarget("redis://:pw@127.0.0.1:6379/3", 0.5)
    assert channel_layer_settings("", presence_store="redis", redis_target=target,
                                  socket_expiry=30)["CHANNEL_LAYER"] == "redis"
    assert channel_layer_settings("", presence_store="memory", redis_target=target,
                                  socket_expiry=30)["CHANNEL_LAYER"] == "memory"
    sentinels = RedisTarget("redis://:pw@/2", 0.5, sentinels=(("127.0.0.1", 26379),), service="lab", password="s")
    layer = channel_layer_settings("redis", presence_store="memory", redis_target=sentinels, socket_expiry=30)
    host = layer["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]
    assert (host["master_name"], host["sentinels"], host["db"], host["password"]) == (
        "lab", [("127.0.0.1", 26379)], 2, "pw")
    with pytest.raises(ConfigError, match="CHANNEL_LAYER must be one of memory, redis"):
        channel_layer_settings("rabbit", presence_store="redis", redis_target=target, socket_expiry=30)
    cluster = RedisTarget("redis://:pw@", 0.5, cluster_nodes=(("127.0.0.1", 7000),))
    # Presence in a Redis Cluster: in memory unless asked, and refused when asked.
    assert channel_layer_settings("", presence_store="redis", redis_target=cluster,
                                  socket_expiry=30)["CHANNEL_LAYER"] == "memory"
    with pytest.raises(ConfigError, match="cannot use Redis Cluster"):
        channel_layer_settings("redis", presence_store="redis", redis_target=cluster, socket_expiry=30)


def test_the_layers_pool_opens_as_many_connections_as_the_socket_target_needs():
    """redis-py's asyncio pool refuses its 101st connection at once: the layer's pools, as channels-redis
    builds them from the settings, take LAYER_CONNECTIONS, for one Redis and under Sentinel alike."""
    for target in (RedisTarget("redis://:pw@127.0.0.1:6379/3", 0.5),
                   RedisTarget("redis://:pw@/2", 0.5, sentinels=(("127.0.0.1", 26379),), service="lab")):
        layer = channel_layer_settings("redis", presence_store="redis", redis_target=target, socket_expiry=30)
        pool = create_pool(layer["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0])
        assert pool.max_connections == LAYER_CONNECTIONS >= 1000


def test_the_room_page_chats_over_the_socket_and_closes_a_gap_by_resuming(layers):
    """Chromium, in-memory layer, ada on one instance and bob on the other: bob's page never gets ada's
    message live, sees the gap in the prev of his own, resumes, and shows it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh does)")
    one, two = layers["memory"]
    lobby = room()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            ada, bob = (browser.new_context().new_page() for _ in range(2))
            for page in (ada, bob):
                page.set_default_timeout(SOON)
            ada_name, bob_name = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
            sign_up_and_join(ada, f"http://{one}", ada_name, lobby)
            sign_up_and_join(bob, f"http://{two}", bob_name, lobby)
            for page, instance in ((ada, "memory1"), (bob, "memory2")):
                expect(page.locator("#transport")).to_have_text(f"live over a WebSocket on {instance}")
            say(ada, "hello from one")
            say(bob, "hello from two")
            expect(bob.locator("#messages li")).to_have_count(2)
            expect(bob.locator("#messages li").first).to_contain_text("hello from one")
            expect(bob.locator("#transport")).to_have_text("live over a WebSocket on memory2")
            expect(bob.locator("#online")).to_have_text(f"{bob_name} (you)")  # the in-memory layer's split
        finally:
            browser.close()


def test_a_socket_closed_while_messages_flow_to_it_leaves_the_online_list(layers):
    """A frame sent to a socket its client just closed fails; the consumer must still run its disconnect, or
    the socket stays listed (for good with the in-memory layer) and stays in the room's group."""
    one, _ = layers["memory"]
    (ada, ada_cookie), (_, bob_cookie), (_, poster_cookie) = user(one), user(one), user(one)
    lobby = room()
    stop = threading.Event()

    def flood():
        with socket(one, lobby, poster_cookie) as ws:
            while not stop.is_set():
                post(ws, "flood")
                stop.wait(0.02)

    with socket(one, lobby, ada_cookie):
        flooding = threading.Thread(target=flood)
        flooding.start()
        try:
            for number in range(30):
                bob = socket(one, lobby, bob_cookie)
                frame(bob, "message")
                if number % 2:
                    bob.close()
                else:
                    bob.socket.close()  # gone without a close frame
        finally:
            stop.set()
            flooding.join(timeout=30)
        with socket(one, lobby, ada_cookie) as again:
            assert online_until(again, [ada])
