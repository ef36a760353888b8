"""Hosts in network namespaces on one bridge, and silent partitions between them."""

import secrets
import socket
import subprocess
import sys

import pytest

from deploy import netns
from deploy.cluster import running, spawn, stop, wait_for

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
    prefix = netns.prefix_for(tmp_path)
    net = netns.create(prefix, netns.free_net_number(), ["app1", "app2", "app3"])
    server = None
    try:
        server = spawn([*net.exec_prefix("app1"), sys.executable, "-m", "http.server", "8080",
                        "--bind", net.address("app1")], log_path=tmp_path / "server.log")
        wait_for(lambda: connect_from_root(net, timeout=1) == "connected", timeout=30, what="the server in a")
        yield net
    finally:
        if server:
            stop(server)
        netns.destroy(prefix)
        assert not [n for n in netns._namespaces() if n.startswith(prefix)], "namespaces left behind"


def connect_from_root(net, timeout):
    try:
        socket.create_connection((net.address("app1"), 8080), timeout=timeout).close()
        return "connected"
    except TimeoutError:
        return "timed out"
    except ConnectionRefusedError:
        return "refused"


def connect_from(net, name, timeout):
    done = subprocess.run([*net.exec_prefix(name), sys.executable, "-c", CONNECT, net.address("app1"), "8080",
                           str(timeout)], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_nodes_reach_each_other_and_the_root_reaches_them(network):
    assert connect_from(network, "app2", timeout=5) == "connected"
    assert connect_from(network, "app3", timeout=5) == "connected"


def test_a_partition_is_silent_and_only_between_the_sides_named(network):
    netns.partition(network, ["app1"], ["app2"])
    assert connect_from(network, "app2", timeout=1) == "timed out"  # a cut cable, not a refusal
    assert connect_from(network, "app3", timeout=5) == "connected"
    assert connect_from_root(network, timeout=5) == "connected"

    netns.partition(network, ["app1"])  # partitions add up: now app1 is cut off from everyone
    assert connect_from(network, "app3", timeout=1) == "timed out"
    assert connect_from_root(network, timeout=1) == "timed out"

    netns.heal(network)
    for name in ("app2", "app3"):
        assert connect_from(network, name, timeout=5) == "connected"
    assert connect_from_root(network, timeout=5) == "connected"


def test_the_prefix_alone_finds_everything_to_remove(tmp_path):
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    prefix = netns.prefix_for(tmp_path)
    try:
        netns.create(prefix, netns.free_net_number(), ["app1"])
        assert f"{prefix}-app1" in netns._namespaces()
    finally:
        netns.destroy(prefix)
    assert f"{prefix}-app1" not in netns._namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{prefix}br" not in links


def test_only_the_names_the_project_makes_are_its_own():
    prefix = netns.prefix_for("/some/state")
    for name in (f"{prefix}-app1", f"{prefix}-app16", f"{prefix}-redis3", f"{prefix}-sentinel1", f"{prefix}-pg7",
                 f"{prefix}-etcd5", f"{prefix}br"):
        assert netns.own_prefix(name) == prefix, name
    for name in ("laboratory-vpn-3f2a", "lab-vpn", "lab", "labbead1-vpn", "labbead1-app1-x", f"{prefix}-app1x",
                 f"{prefix}-app123", f"{prefix}br0", f"{prefix}-br", f"x{prefix}-app1", "lab1234-app1",
                 "labcafe12-app1", "labCAFE1-app1", "labprobe1f2e3d4c"):
        assert netns.own_prefix(name) is None, name


def test_cleanup_of_every_cluster_leaves_a_look_alike_namespace_and_its_process(tmp_path):
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    foreign = f"laboratory-vpn-{secrets.token_hex(3)}"  # somebody else's, named like ours at first sight
    netns._run("ip", "netns", "add", foreign)
    inside = None
    try:
        inside = spawn(["ip", "netns", "exec", foreign, "sleep", "600"], log_path=tmp_path / "sleep.log")
        wait_for(lambda: str(inside["pid"]) in netns._pids(foreign), timeout=30, what="sleep in the namespace")
        # Only this namespace is offered: the machine's other clusters are not this test's to remove.
        assert netns.destroy_all([foreign]) == 0
        assert foreign in netns._namespaces() and running(inside)
    finally:
        if inside:
            stop(inside)
        netns._run("ip", "netns", "del", foreign, check=False)
    assert foreign not in netns._namespaces()
