"""The lab on Docker Swarm, for real: opt-in (`pytest --swarm tests/test_swarm.py`); it builds images, starts dockerd.

The module builds the images (`python -m deploy images`, minutes from a
fresh machine, seconds once Docker's cache holds), runs a two-instance
cluster with Redis sessions on a one-node swarm, kills a task and checks
that no login was lost and that Swarm replaced the task; and runs the
namespace experiments' partition tests while dockerd runs, which its FORWARD
policy of DROP would break without the lab's DOCKER-USER rules. At the end
the engine is released: if this module started dockerd, it is stopped and
the host's iptables tables and forwarding are as they were.
"""

import subprocess
import sys
import uuid

import pytest

from deploy import engine
from deploy import swarm as swarm_runtime
from deploy.cluster import free_base_port, images, load, wait_for
from deploy.netns import prefix_for
from tests.clusters import ROOT, deploy
from tests.http import Browser

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(3600)]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def built():
    """The images, and dockerd; released at the end (stopped and undone if this module started it)."""
    before = {"forwarding": engine.FORWARDING.read_text().strip(), "tables": engine._tables()}
    started_here = not engine.answering()
    try:
        yield images(say=lambda line: None)
    finally:
        swarm_runtime.release_engine()
        if started_here:
            assert not engine.answering(), "the dockerd this module started still runs"
            assert engine.FORWARDING.read_text().strip() == before["forwarding"]
            assert engine._tables() == before["tables"]


def test_the_namespace_partition_tests_pass_while_dockerd_runs(built):
    assert "-P FORWARD DROP" in engine.forward_rules()  # dockerd's policy, in force
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "tests/test_netns.py",
         "-k", "reach_each_other or partition_is_silent"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 passed" in done.stdout


def test_a_killed_task_is_replaced_and_no_login_is_lost(built, tmp_path):
    state = tmp_path / "state"
    label = f"label=com.docker.stack.namespace={prefix_for(state.resolve())}"
    done = deploy(state, "up", "--runtime", "swarm", "--instances", "2", "--sessions", "redis",
                  "--presence", "redis", "--port", str(free_base_port()),
                  "--env", "PASSWORD_ITERATIONS=1000", "--env", "SIGNUP_MAX_PER_ADDRESS=1000", check=False)
    try:
        assert done.returncode == 0, done.stderr
        cluster = load(state)
        users = {f"user-{uuid.uuid4().hex[:8]}": Browser() for _ in range(8)}
        for name, browser in users.items():
            assert browser.sign_up(cluster.url, name, PASSWORD).status == 302
        served = {browser.get(f"{cluster.url}/api/me").headers["X-Served-By"] for browser in users.values()}
        assert served == {"app1", "app2"}  # round robin over both tasks, named by slot
        before = {row["name"]: row for row in swarm_runtime.instance_rows(cluster)}

        deploy(state, "kill", "app1")
        for browser in users.values():  # while app1 is gone, app2 serves every user, still logged in
            assert browser.get(f"{cluster.url}/api/me").json().get("username") in users, "a login was lost"
        deploy(state, "start", "app1")  # returns once Swarm's replacement task serves
        after = {row["name"]: row for row in swarm_runtime.instance_rows(cluster)}
        assert after["app1"]["alive"] and after["app1"]["lb_state"] == "UP"
        assert after["app1"]["container"] != before["app1"]["container"], "app1 was not replaced"
        assert after["app2"]["container"] == before["app2"]["container"]

        answers = {name: browser.get(f"{cluster.url}/api/me") for name, browser in users.items()}
        assert {name: answer.json().get("username") for name, answer in answers.items()} == {n: n for n in users}
        assert "app1" in {answer.headers["X-Served-By"] for answer in answers.values()}  # the new task serves
    finally:
        deploy(state, "down", check=False)
    assert not engine.answering() or not engine.docker("ps", "-aq", "--filter", label).stdout.split()
    wait_for(lambda: not (state / "cluster.json").exists(), timeout=5, what="the record to go")
