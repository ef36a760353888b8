"""Hosts in network namespaces on one bridge, and silent partitions between them."""

import secrets
import socket
import subprocess
import sys

import pytest

from deploy import netns
from deploy.processes import spawn, stop, wait_for

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except TimeoutError:
    print("timed out")
except ConnectionRefusedError:
    print("refused")
"""


@pytest.fixture
def network(tmp_path):
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    prefix = f"lab{secrets.token_hex(2)}"
    net = netns.create(prefix, secrets.randbelow(256), ["a", "b", "c"])
    server = None
    try:
        server = spawn([*net.exec_prefix("a"), sys.executable, "-m", "http.server", "8080",
                        "--bind", net.address("a")], log_path=tmp_path / "server.log")
        wait_for(lambda: connect_from_root(net, timeout=1) == "connected", timeout=30, what="the server in a")
        yield net
    finally:
        if server:
            stop(server)
        netns.destroy(prefix)
        assert not [n for n in netns._namespaces() if n.startswith(prefix)], "namespaces left behind"


def connect_from_root(net, timeout):
    try:
        socket.create_connection((net.address("a"), 8080), timeout=timeout).close()
        return "connected"
    except TimeoutError:
        return "timed out"
    except ConnectionRefusedError:
        return "refused"


def connect_from(net, name, timeout):
    done = subprocess.run([*net.exec_prefix(name), sys.executable, "-c", CONNECT, net.address("a"), "8080",
                           str(timeout)], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_nodes_reach_each_other_and_the_root_reaches_them(network):
    assert connect_from(network, "b", timeout=5) == "connected"
    assert connect_from(network, "c", timeout=5) == "connected"


def test_a_partition_is_silent_and_only_between_the_sides_named(network):
    netns.partition(network, ["a"], ["b"])
    assert connect_from(network, "b", timeout=1) == "timed out"  # a cut cable, not a refusal
    assert connect_from(network, "c", timeout=5) == "connected"
    assert connect_from_root(network, timeout=5) == "connected"

    netns.partition(network, ["a"])  # partitions add up: now a is cut off from everyone
    assert connect_from(network, "c", timeout=1) == "timed out"
    assert connect_from_root(network, timeout=1) == "timed out"

    netns.heal(network)
    for name in ("b", "c"):
        assert connect_from(network, name, timeout=5) == "connected"
    assert connect_from_root(network, timeout=5) == "connected"


def test_the_prefix_alone_finds_everything_to_remove(tmp_path):
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    prefix = f"lab{secrets.token_hex(2)}"
    try:
        netns.create(prefix, secrets.randbelow(256), ["x"])
        assert f"{prefix}-x" in netns._namespaces()
    finally:
        netns.destroy(prefix)
    assert f"{prefix}-x" not in netns._namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{prefix}br" not in links
