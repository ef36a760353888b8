"""WebSockets on clusters that `python -m deploy up --server uvicorn` starts: the channel layer deploy wires,
HAProxy's /ws/ backend, the open sockets in `status`, a graceful stop's 1001, a kill's resume.

The clients are `websockets`' synchronous ones (the library uvicorn itself
speaks WebSockets with), with the helpers of tests/test_websockets.py.
"""

import os
import re
import subprocess
import sys
import threading
import uuid

import pytest
from playwright.sync_api import expect, sync_playwright
from websockets.exceptions import ConnectionClosed

from deploy import haproxy, sockets
from deploy.cluster import ROOT, DeployError, Topology, act, down, free_base_port, status, up, wait_for
from loadtest.harness import socket_checkers
from loadtest.harness.accounts import for_locust
from loadtest.harness.checkers import ops
from loadtest.harness.history import load as load_history
from tests.test_browser import CHROMIUM, FLAGS, SOON, sign_up_and_join
from tests.test_websockets import frame, frame_ack, post, read_until, room, socket, user

# Every test signs its users up from this machine's one address: more than the site's default of 10.
SITE_ENV = {"PASSWORD_ITERATIONS": "1000", "SIGNUP_MAX_PER_ADDRESS": "100"}


def test_the_channel_layer_follows_presence_and_is_refused_where_it_cannot_work():
    plan = sockets.plan_layer
    assert plan("", server="uvicorn", presence="redis", topology=Topology()) == "redis"
    assert plan("", server="uvicorn", presence="memory", topology=Topology()) == "memory"
    assert plan("", server="uvicorn", presence="redis", topology=Topology(redis="cluster")) == "memory"
    assert plan("redis", server="uvicorn", presence="memory", topology=Topology(redis="sentinel")) == "redis"
    assert plan("", server="gthread:8", presence="redis", topology=Topology()) == ""
    with pytest.raises(DeployError, match="--server gthread:8 is WSGI and has no sockets; add --server uvicorn"):
        plan("memory", server="gthread:8", presence="redis", topology=Topology())
    with pytest.raises(DeployError, match="cannot use Redis Cluster"):
        plan("redis", server="uvicorn", presence="redis", topology=Topology(redis="cluster"))
    with pytest.raises(DeployError, match="'rabbit' is not one of: memory, redis"):
        plan("rabbit", server="uvicorn", presence="redis", topology=Topology())
    # The Redis layer brings its Redis when sessions and presence need none.
    assert sockets.servers_for_layer("redis", ["sqlite"]) == ["sqlite", "redis"]
    assert sockets.servers_for_layer("memory", ["sqlite"]) == ["sqlite"]


def test_haproxy_sends_sockets_to_a_backend_of_their_own(tmp_path):
    config = haproxy.render(port=8000, stats_port=8001, socket_path=tmp_path / "s", pidfile=tmp_path / "p",
                            lb="sticky", slots=[("app1", "127.0.0.1", 8011, True), ("app2", "127.0.0.1", 8012, False)])
    backend = config.split("\nbackend sockets\n", 1)[1].split("listen stats")[0]
    assert "use_backend sockets if { path_beg /ws/ }" in config
    assert "timeout tunnel" in backend and "maxconn 64" not in backend
    assert f"default-server maxconn {haproxy.SOCKET_CONNECTIONS}" in backend
    assert "cookie SERVERID insert indirect nocache" in backend  # sticky as the requests are
    assert "server app1 127.0.0.1:8011 cookie app1 track instances/app1\n" in backend
    assert "server app2 127.0.0.1:8012 cookie app2 track instances/app2 disabled" in backend
    (tmp_path / "haproxy.cfg").write_text(config)
    checked = subprocess.run(["haproxy", "-c", "-f", tmp_path / "haproxy.cfg"], capture_output=True, text=True,
                             env=haproxy.environment("secret"))
    assert checked.returncode == 0, checked.stderr


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Two uvicorn instances per channel layer, each cluster deployed once for the module."""
    made = {}
    try:
        for layer in ("redis", "memory"):
            state_dir = tmp_path_factory.mktemp(f"sockets-{layer}")
            made[layer] = up(instances=2, server="uvicorn", sessions="redis", presence="memory", channel_layer=layer,
                             port=free_base_port(), env=SITE_ENV, state_dir=state_dir)
        yield made
    finally:
        for cluster in made.values():
            down(cluster.state_dir)


def hosts(cluster):
    return [f"{cluster.host(name)}:{cluster.instance_port(name)}" for name in ("app1", "app2")]


@pytest.mark.parametrize("layer", ["redis", "memory"])
def test_deploy_wires_the_channel_layer_a_post_reaches_the_other_instance_only_through_redis(deployed, layer):
    one, two = hosts(deployed[layer])
    _, cookie = user(one)
    lobby = room()
    with socket(one, lobby, cookie) as a, socket(two, lobby, cookie) as b:
        frame(b, "presence")
        first = frame_ack(a, post(a, "from app1"))
        if layer == "redis":
            assert frame(b, "message")["id"] == first  # through the layer
        post(b, "from app2")
        got = frame(b, "message")
        # The memory layer never carried app1's post: app2's own comes first, its prev showing the gap.
        assert (got["text"], got["prev"]) == ("from app2", first)


def test_the_redis_layer_under_sentinel_carries_a_post_to_the_other_instance(tmp_path):
    """The layer reads the Sentinel settings deploy gives every Redis user of the site."""
    cluster = up(instances=2, server="uvicorn", sessions="redis", presence="redis", port=free_base_port(),
                 topology=Topology(redis="sentinel", redis_replicas=1), env=SITE_ENV, state_dir=tmp_path / "c")
    try:
        assert status(state_dir=cluster.state_dir)["channel_layer"] == "redis"
        one, two = hosts(cluster)
        _, cookie = user(one)
        lobby = room()
        with socket(one, lobby, cookie) as a, socket(two, lobby, cookie) as b:
            frame(b, "presence")
            first = frame_ack(a, post(a, "through Sentinel's primary"))
            assert frame(b, "message")["id"] == first
    finally:
        down(cluster.state_dir)


def test_concurrent_posts_on_two_deployed_instances_reach_a_gap_closing_client_exactly_once(deployed):
    cluster = deployed["memory"]
    one, two = hosts(cluster)
    _, cookie = user(one)
    lobby = room()
    acked = []

    def poster(host):
        with socket(host, lobby, cookie) as ws:
            acked.extend(frame_ack(ws, post(ws, f"{host} {n}")) for n in range(8))

    with socket(two, lobby, cookie) as reader:
        frame(reader, "presence")
        threads = [threading.Thread(target=poster, args=(host,)) for host in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        with socket(two, lobby, cookie) as closer:
            acked.append(frame_ack(closer, post(closer, "the end")))
        held, resumes = read_until(reader, two, lobby, cookie, set(acked))
    assert len(acked) == 17 and sorted(held) == sorted(acked) and resumes >= 1


def sockets_open(cluster):
    return {row["name"]: row["sockets"] for row in status(state_dir=cluster.state_dir)["instances"]}


def test_a_graceful_stop_closes_the_instance_s_sockets_with_1001_and_status_counts_them(deployed):
    cluster = deployed["redis"]
    site = cluster.url.split("//")[1]
    _, cookie = user(site)
    lobby = room()
    with socket(site, lobby, cookie) as a, socket(site, lobby, cookie) as b:
        for ws in (a, b):
            frame(ws, "presence")
        # Round robin: one each (read from each instance's /healthz, which a busy instance may answer late).
        wait_for(lambda: sockets_open(cluster) == {"app1": 1, "app2": 1}, timeout=20, what="one socket on each")
        act("term", "app1", state_dir=cluster.state_dir)
        codes = []
        for ws in (a, b):
            try:
                while True:
                    ws.recv(timeout=3)
            except ConnectionClosed as closed:
                codes.append((closed.rcvd.code, closed.rcvd.reason))
            except TimeoutError:
                codes.append("open")
    try:
        assert sorted(codes, key=str) == sorted([(1001, "this instance is stopping; reconnect"), "open"], key=str)
        assert sockets_open(cluster)["app1"] is None
    finally:
        act("start", "app1", state_dir=cluster.state_dir)


def test_a_killed_instance_s_client_resumes_through_haproxy_and_gets_every_message_once_in_order(deployed):
    cluster = deployed["redis"]
    site = cluster.url.split("//")[1]
    one, two = hosts(cluster)
    _, cookie = user(site)
    lobby = room()
    with socket(two, lobby, cookie) as poster:
        before = frame_ack(poster, post(poster, "before"))
        with socket(one, lobby, cookie, after=0) as victim:
            held = frame(victim, "message")["id"]  # the client's last id: "before", replayed
            act("kill", "app1", state_dir=cluster.state_dir)
            with pytest.raises(ConnectionClosed):
                while True:
                    victim.recv(timeout=20)
        try:
            meanwhile = [frame_ack(poster, post(poster, f"meanwhile {n}")) for n in range(5)]
            with socket(site, lobby, cookie, after=held) as resumed:
                got = [frame(resumed, "message") for _ in meanwhile]
                live = frame_ack(poster, post(poster, "live"))
                got.append(frame(resumed, "message"))
                end = frame_ack(poster, post(poster, "end"))
                got.append(frame(resumed, "message"))  # nothing came twice in between
        finally:
            act("start", "app1", state_dir=cluster.state_dir)
    assert held == before
    assert [message["id"] for message in got] == [*meanwhile, live, end]
    assert [message["prev"] for message in got] == [before, *meanwhile, live]


def test_locust_socket_users_record_their_connections_posts_and_deliveries_into_a_history(deployed, tmp_path):
    cluster = deployed["redis"]
    accounts = for_locust(users=4, processes=1, run_time=8, stay=None, state_dir=cluster.state_dir)
    env = {**os.environ, "LOADTEST_ACCOUNTS": accounts, "LOADTEST_ROOMS": "1", "LOADTEST_HISTORY": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "loadtest/locustfiles/sockets.py", "--headless",
                           "-u", "4", "-r", "4", "-t", "8s", "--host", cluster.url, "--only-summary",
                           "--stop-timeout", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = tmp_path.glob("history-*.jsonl")
    _, events = load_history(path)
    assert len(ops(events, "connect", "ok")) >= 4
    acked = socket_checkers.acknowledged(events)
    assert len(acked) >= 8, done.stderr[-2000:]
    got = socket_checkers.held(events)
    assert all(got[post["who"]][message] for message, post in acked.items())  # each author got its own
    assert socket_checkers.delivered_twice(events) == []
    assert "WS post" in done.stderr + done.stdout


def test_the_room_page_names_its_socket_s_instance_and_resumes_after_that_instance_is_killed(deployed):
    """Chromium through HAProxy: the status bar names the instance holding the socket; once it is killed, the
    page reconnects to the other one and shows every message posted meanwhile once, in order."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh does)")
    cluster = deployed["redis"]
    lobby = room()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        killed = None
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(SOON)
            sign_up_and_join(page, cluster.url, f"p{uuid.uuid4().hex[:8]}", lobby)
            transport = page.locator("#transport")
            expect(transport).to_have_text(re.compile(r"^live over a WebSocket on app[12]$"))
            killed = transport.text_content().rsplit(" ", 1)[1]
            survivor = "app2" if killed == "app1" else "app1"
            _, cookie = user(hosts(cluster)[0])
            with socket(f"{cluster.host(survivor)}:{cluster.instance_port(survivor)}", lobby, cookie) as poster:
                frame_ack(poster, post(poster, "before"))
                expect(page.locator("#messages li")).to_have_count(1)
                act("kill", killed, state_dir=cluster.state_dir)
                for number in range(3):
                    frame_ack(poster, post(poster, f"meanwhile {number}"))
                expect(transport).to_have_text(f"live over a WebSocket on {survivor}")
                frame_ack(poster, post(poster, "live again"))
                expect(page.locator("#messages li")).to_have_count(5)
            shown = page.locator("#messages li").all_text_contents()
            wanted = ["before", "meanwhile 0", "meanwhile 1", "meanwhile 2", "live again"]
            assert all(text in item for text, item in zip(wanted, shown, strict=True)), shown
        finally:
            browser.close()
            if killed:
                act("start", killed, state_dir=cluster.state_dir)
