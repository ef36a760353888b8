"""The latency relay (deploy/latency.py) before a real Redis: the delay it adds, live changes, stalls, jitter, limits.

Each test starts a relay process the way deploy will (`latency.start`) in front of a Redis of its own,
and stops both, also when it fails.

Tolerance: the added round trip is checked against twice the setting to within 10 % or 0.3 ms, whichever is
larger (issue 33's target): the shortest of 21 pings through the relay less the shortest of 21 direct ones,
measured just before. The shortest, not the median: a busy machine only ever adds time (a process woken by its
timer waits for a free core), and with both cores kept busy (scripts/busy.sh) the median through a 10 ms relay
moved by several milliseconds while the shortest stayed within one. Nothing the machine does can make a round
trip shorter than the delay set, so a relay that delivers early, or late every time, still fails.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis

from deploy import latency, relay
from deploy.cluster import DeployError, alive, free_port, wait_for
from tests import servers

PINGS = 21


@pytest.fixture
def store():
    server = servers.redis_server().start()
    yield server
    server.stop()


class Link:
    """A relay process (started as deploy starts one) in front of `store`, with clients through it and past it."""

    def __init__(self, store, record, log):
        self.store, self.record, self.log = store, record, log
        self.control = record["control"]
        self.port = latency.status(self.control)["redis"]["listen"][1]

    def client(self, direct=False):
        return redis.Redis(port=self.store.port if direct else self.port, password=self.store.password,
                           socket_timeout=30)

    def status(self):
        return latency.status(self.control)["redis"]


@pytest.fixture
def link(store):
    folder = tempfile.mkdtemp(prefix="lab-test-latency-")  # short: a UNIX socket's path has at most 107 bytes
    try:
        record = latency.start({"redis": (("127.0.0.1", 0), ("127.0.0.1", store.port))},
                               control=f"{folder}/control", log_path=f"{folder}/relay.log")
        try:
            yield Link(store, record, f"{folder}/relay.log")
        finally:
            latency.stop(record)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def round_trip_ms(client):
    """The shortest of PINGS round trips, in milliseconds, after one to open the connection."""
    client.ping()
    times = []
    for _ in range(PINGS):
        began = time.perf_counter()
        assert client.ping()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def assert_adds(link, client, delay_ms):
    """Through the relay, a round trip takes 2 * delay_ms longer than past it (see the module's tolerance)."""
    direct = round_trip_ms(link.client(direct=True))
    added = round_trip_ms(client) - direct
    assert abs(added - 2 * delay_ms) <= max(0.1 * 2 * delay_ms, 0.3), (added, direct)


def test_a_round_trip_through_the_relay_takes_twice_the_delay_longer(link):
    latency.set_delay(link.control, 10)
    assert_adds(link, link.client(), 10)


def test_pipelined_commands_wait_for_the_delay_once_not_once_each(link):
    latency.set_delay(link.control, 10)
    client = link.client()
    client.ping()
    pipeline = client.pipeline(transaction=False)
    for _ in range(100):
        pipeline.ping()
    began = time.perf_counter()
    assert pipeline.execute() == [True] * 100
    took_ms = (time.perf_counter() - began) * 1000
    # About 20 ms; one round trip per command would be 2 s. The bound is loose for a busy machine.
    assert 20 <= took_ms < 200, took_ms


def test_a_new_delay_applies_to_connections_already_open_and_0_removes_it(link):
    client = link.client()
    latency.set_delay(link.control, 10)
    assert_adds(link, client, 10)
    latency.set_delay(link.control, 30)
    assert_adds(link, client, 30)
    assert link.status()["connections"] == 1  # the same connection all along
    latency.set_delay(link.control, 0)
    assert_adds(link, client, 0)


def ping_in_background(client):
    """Start a PING on its own thread; return the thread and a dict that gets its answer and when it came."""
    outcome = {}

    def ping():
        outcome["answer"] = client.ping()
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=ping, daemon=True)
    thread.start()
    return thread, outcome


def test_a_stall_holds_a_command_until_it_ends_and_the_connection_stays_open(link):
    client = link.client()
    client.ping()
    began = time.monotonic()
    latency.stall(link.control, 1.5)
    thread, outcome = ping_in_background(client)
    thread.join(0.5)
    assert thread.is_alive(), "a command went through a stalled link"
    status = link.status()
    assert status["stalled"] and status["connections"] == 1
    thread.join(30)
    assert outcome["answer"] is True
    assert outcome["at"] - began >= 1.5  # the stall began after `began`, so it cannot have ended sooner
    assert not link.status()["stalled"]
    assert client.ping()  # the same connection, still open


def test_a_stall_until_resumed_delivers_everything_queued_on_resume(link):
    client = link.client()
    client.ping()
    latency.stall(link.control)
    thread, outcome = ping_in_background(client)
    thread.join(0.5)
    assert thread.is_alive(), "a command went through a stalled link"
    assert link.status()["stall_left_s"] is None  # until resumed
    latency.resume(link.control)
    thread.join(30)
    assert outcome["answer"] is True
    assert client.ping()


def command(*words):
    """One Redis command in RESP."""
    encoded = [str(word).encode() for word in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded)


def test_jitter_never_reorders_the_byte_stream(link):
    latency.set_delay(link.control, 2, jitter_ms=2)  # each chunk's delay from 0 to 4 ms
    count = 150
    with socket.create_connection(("127.0.0.1", link.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(command("AUTH", link.store.password))
        for index in range(count):
            sock.sendall(command("RPUSH", "order", index))
            time.sleep(0.0005)  # pacing, not waiting: each command a chunk of its own, with a delay of its own
        replies = b""
        expected = b"+OK\r\n" + b"".join(b":%d\r\n" % length for length in range(1, count + 1))
        while len(replies) < len(expected):
            received = sock.recv(65536)
            assert received, "the relay closed the connection"
            replies += received
    assert replies == expected  # the answers came back in order
    pushed = link.client(direct=True).lrange("order", 0, -1)
    assert pushed == [str(index).encode() for index in range(count)]  # and the commands went in in order


def test_megabytes_pass_and_a_stalled_direction_holds_at_most_its_limit(link):
    value = os.urandom(24 * 1024 * 1024)
    client = link.client()
    client.ping()  # connected and signed in before the stall
    latency.stall(link.control)
    writer = threading.Thread(target=client.set, args=("big", value), daemon=True)
    writer.start()
    wait_for(lambda: link.status()["queued_bytes"] >= relay.QUEUE_LIMIT, timeout=30,
             what="the relay's queue to fill")
    assert link.status()["queued_bytes"] <= relay.QUEUE_LIMIT + relay.CHUNK
    assert writer.is_alive()  # the rest waits in the sender: the relay stopped reading
    latency.resume(link.control)
    writer.join(60)
    assert not writer.is_alive()
    latency.set_delay(link.control, 5)
    assert client.get("big") == value
    assert link.status()["queued_bytes"] == 0


def test_the_relay_exits_cleanly_on_sigterm_with_connections_open(link):
    sock = socket.create_connection(("127.0.0.1", link.port), timeout=30)
    sock.sendall(command("AUTH", link.store.password))
    assert sock.recv(5) == b"+OK\r\n"
    pid = link.record["pid"]
    os.kill(pid, signal.SIGTERM)  # what latency.stop sends first

    def exited():
        reaped, status = os.waitpid(pid, os.WNOHANG)
        return [os.waitstatus_to_exitcode(status)] if reaped else None

    assert wait_for(exited, timeout=10, what="the relay to exit") == [0], Path(link.log).read_text()
    assert not alive(pid)
    assert not Path(link.control).exists()
    assert "Traceback" not in Path(link.log).read_text()
    with sock:  # closed by the relay: a reset, or an end of stream
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass


def test_bad_requests_are_refused_with_what_was_wrong(link, tmp_path):
    with pytest.raises(DeployError, match="ms must be a number of milliseconds from 0 to 60000, not -1"):
        latency.set_delay(link.control, -1)
    with pytest.raises(DeployError, match="jitter_ms must be"):
        latency.set_delay(link.control, 1, jitter_ms="much")
    with pytest.raises(DeployError, match="no route 'redis9'; routes: redis"):
        latency.stall(link.control, 1, route="redis9")
    with pytest.raises(DeployError, match="seconds must be a number above 0 and at most 3600"):
        latency.stall(link.control, 0)
    with pytest.raises(DeployError, match="op must be one of status, delay, stall, resume"):
        latency.request(link.control, {"op": "partition"})
    assert link.status()["delay_ms"] == 0 and not link.status()["stalled"]  # nothing half-applied
    with pytest.raises(DeployError, match="delay_ms must be"):
        latency.start({}, control=tmp_path / "unused", log_path=tmp_path / "unused.log", delay_ms=-5)


def test_a_relay_that_cannot_listen_says_why(store, tmp_path):
    taken = ("127.0.0.1", store.port)  # Redis listens there
    with pytest.raises(DeployError, match="the latency relay exited: .*address already in use"):
        latency.start({"redis": (taken, taken)}, control=tmp_path / "control", log_path=tmp_path / "relay.log")


def test_a_connection_from_a_known_peer_is_delayed_by_both_ends(link):
    latency.set_delay(link.control, 2)
    client = link.client()  # opened by this process, which the relay now knows as a node 3 ms away
    client.ping()
    latency.set_peers(link.control, {"here": {"ms": 3, "address": "127.0.0.1", "pids": [os.getpid()]}})
    wait_for(lambda: link.status()["from"] == ["here"], timeout=10, what="the relay to know the connection's end")
    assert_adds(link, client, 2 + 3)
    latency.stall(link.control, 1, peer="here")
    began = time.monotonic()
    assert client.ping()
    assert time.monotonic() - began >= 0.9  # the stall of the peer held it


def test_a_connection_the_kernel_makes_to_itself_is_closed_and_its_port_left_for_the_node(monkeypatch):
    # A target down whose port the kernel gives the relay's own end (forced here: the relay connects from it):
    # TCP connects the socket to itself, which would echo the client's bytes back as the answer and hold the
    # port the node restarts on.
    port = free_port()
    monkeypatch.setattr(relay, "_same_source", lambda client_writer, target: ("127.0.0.1", port))
    seen = []  # each connection the relay made: the kernel must have connected it to itself (not reset it)

    def to_itself(writer, found=relay._to_itself):
        seen.append(writer.get_extra_info("sockname")[:2] == (writer.get_extra_info("peername") or ())[:2])
        return found(writer)
    monkeypatch.setattr(relay, "_to_itself", to_itself)

    async def ask():
        route = await relay.Relay(listen=("127.0.0.1", 0), target=("127.0.0.1", port)).start()
        try:
            reader, writer = await asyncio.open_connection(*route.address)
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            try:
                answer = await asyncio.wait_for(reader.read(100), timeout=30)
            except ConnectionResetError:
                answer = b""
            writer.close()
            return answer
        finally:
            await route.close()

    assert asyncio.run(ask()) == b""
    assert seen == [True]
    with socket.socket() as sock:  # no SO_REUSEADDR: a connection left in TIME_WAIT on the port would hold it
        sock.bind(("127.0.0.1", port))


def test_deploy_cluster_imports_the_relay_under_gevent_as_locust_does():
    # Locust's processes import deploy.cluster with gevent's selectors, which have no EpollSelector.
    done = subprocess.run([sys.executable, "-c", "from gevent import monkey; monkey.patch_all(); "
                           "import deploy.cluster, deploy.relay; print('imported')"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "imported", done.stderr[-1000:]
