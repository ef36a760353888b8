"""CPU limits as cgroups (deploy/cgroups.py): made by `up`, joined by every process, removed also on failure."""

import os
import signal
import subprocess

import pytest

from deploy import cgroups
from deploy import cluster as deploy_cluster
from deploy.cluster import wait_gone
from tests import clusters


def _writable():
    found = cgroups.version()
    if found is None:
        return "no cgroup CPU controller on this machine"
    if not os.access(cgroups.ROOT / ("" if found == "v2" else "cpu"), os.W_OK):
        return "cgroups are not writable here (needs root)"
    return None


pytestmark = pytest.mark.skipif(bool(_writable()), reason=_writable() or "")


def _folders(port):
    name = f"stateful-lab-{port}"
    return [path for path in (cgroups.ROOT / name, cgroups.ROOT / "cpu" / name, cgroups.ROOT / "cpuset" / name)
            if path.exists()]


def _groups_of(pid):
    return open(f"/proc/{pid}/cgroup").read()


def _allowed_cpus(pid):
    line = next(line for line in open(f"/proc/{pid}/status") if line.startswith("Cpus_allowed_list"))
    return line.split()[1]


def test_instances_get_their_quota_and_cpu_and_down_removes_the_groups(tmp_path):
    cluster = clusters.up(tmp_path, "--instances", "2", "--sessions", "redis", "--cpu-quota", "0.5",
                          "--site-cpus", "0")
    state = cluster.status()
    port = int(state["url"].rsplit(":", 1)[1])
    try:
        assert state["cpu"]["quota"] == 0.5
        limits = cgroups.Groups(state["cpu"])
        for row in state["instances"]:
            assert f"/stateful-lab-{port}/{row['name']}" in _groups_of(row["pid"])
            assert _allowed_cpus(row["pid"]) == "0"
            quota = limits._folder("cpu", row["name"]) / ("cpu.max" if limits.limits.version == "v2"
                                                          else "cpu.cfs_quota_us")
            assert quota.read_text().split()[0] == "50000"
        for pid in (state["haproxy"]["pid"], *(row["pid"] for row in state["stores"])):
            assert _allowed_cpus(pid) == state["cpu"]["rest_cpus"]
    finally:
        cluster.run("down")
    assert _folders(port) == []


def test_a_failed_up_removes_its_groups_and_bad_limits_are_refused(tmp_path):
    port = deploy_cluster.free_base_port()
    # The stores start and join their group; then migrate fails on a bad setting.
    failed = clusters.deploy(tmp_path, "up", "--port", str(port), "--sessions", "redis", "--cpu-quota", "0.5",
                             "--site-cpus", "0", "--env", "SESSION_COOKIE_AGE=soon", check=False)
    assert failed.returncode == 1 and "migrate failed" in failed.stderr
    assert _folders(port) == []
    assert clusters.recorded_pids(tmp_path) == []
    everything = ",".join(map(str, range(os.cpu_count())))
    refused = clusters.deploy(tmp_path, "up", "--port", str(port), "--site-cpus", everything, check=False)
    assert "leaves no CPU for HAProxy and the stores" in refused.stderr
    refused = clusters.deploy(tmp_path, "up", "--port", str(port), "--cpu-quota", "0", check=False)
    assert "--cpu-quota 0: give cores per instance" in refused.stderr


def test_remove_moves_a_process_still_inside_out_first():
    limits = cgroups.Limits.plan(port=deploy_cluster.free_base_port(), quota=0.25, site_cpus="0")
    groups = cgroups.Groups(limits)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        groups.create()
        groups.join(sleeper.pid, "app1")
        assert f"/{limits.name}/app1" in _groups_of(sleeper.pid)
        groups.remove()
        assert limits.name not in _groups_of(sleeper.pid)
        assert sleeper.poll() is None
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)
        wait_gone(sleeper.pid, 5)
        if _folders(limits.name.rsplit("-", 1)[1]):
            groups.remove()
    assert _folders(limits.name.rsplit("-", 1)[1]) == []
