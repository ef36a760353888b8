"""The control room's JSON interface, against a real `python -m control` and a real cluster it starts.

The tests of one cluster run in file order on one module-wide room: up,
every fault action, a kill from a terminal, the load, down.
"""

import json
import time

import pytest
import requests

from control.load import MAX_USERS
from deploy import cluster as deploy_cluster
from tests import clusters
from tests.clusters import deploy
from tests.controlroom import ControlRoom

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control")
    control = ControlRoom(folder / "cluster", folder / "runs")
    yield control
    left = control.stop()
    assert not left, f"processes left: {left}"


def test_a_foreign_host_is_refused_on_every_path(room):
    for method, path in (("GET", "/"), ("GET", "/api/state"), ("GET", "/api/events"),
                         ("GET", "/static/control/room.js"), ("POST", "/api/actions")):
        answer = requests.request(method, f"{room.url}{path}", headers={"Host": "evil.example"}, timeout=10)
        assert answer.status_code == 400, (method, path, answer.status_code)


def test_a_foreign_origin_is_refused(room):
    assert requests.get(f"{room.url}/api/state", headers={"Origin": EVIL}, timeout=10).status_code == 403
    answer = room.http.post(f"{room.url}/api/actions", data=json.dumps({"action": "down"}), timeout=10,
                            headers={"X-CSRFToken": room.http.cookies["csrftoken"], "Origin": EVIL})
    assert answer.status_code == 403
    assert "refused" in answer.json()["error"]
    own = room.http.post(f"{room.url}/api/actions", data=json.dumps({"action": "down"}), timeout=10,
                         headers={"X-CSRFToken": room.http.cookies["csrftoken"], "Origin": room.url})
    assert own.status_code == 409  # past the guard: no cluster is up


def test_a_post_without_the_csrf_token_is_refused(room):
    body = json.dumps({"action": "down"})
    assert requests.post(f"{room.url}/api/actions", data=body, timeout=10).status_code == 403
    no_header = room.http.post(f"{room.url}/api/actions", data=body, timeout=10)
    assert no_header.status_code == 403
    assert "X-CSRFToken" in no_header.json()["error"]


@pytest.mark.parametrize(("body", "named"), [
    (None, "action"),
    ({"action": "explode"}, "explode"),
    ({"action": "up", "options": {"colour": "red"}}, "colour"),
    ({"action": "up", "options": {"instances": "three"}}, "--instances"),
    ({"action": "up", "options": {"instances": 99}}, "--instances"),
    ({"action": "up", "options": {"lb": "random"}}, "--lb"),
    ({"action": "up", "options": {"netns": "yes"}}, "netns"),
    ({"action": "load"}, "users"),
    ({"action": "load", "users": -1}, "users"),
    ({"action": "load", "users": MAX_USERS + 1}, str(MAX_USERS)),
    ({"action": "kill"}, "target"),
    ({"action": "kill", "target": "app1", "force": True}, "force"),
    ({"action": "kill", "target": 5}, "target"),
    ({"action": "kill", "target": ["app1"]}, "target"),
    ({"action": "partition", "target": [5]}, "target"),
    ({"action": "partition", "target": "app1", "from": "app2"}, "from"),
    ({"action": "partition", "target": "app1", "from": [2]}, "from"),
    ({"action": "up", "options": {"env": ["LD_PRELOAD=/tmp/x.so"]}}, "LD_PRELOAD"),
    ({"action": "up", "options": {"env": ["PYTHONPATH=/tmp"]}}, "PYTHONPATH"),
    ({"action": "up", "options": {"env": ["PATH=/tmp"]}}, "PATH"),
    ({"action": "up", "options": {"env": ["HOME=/tmp"]}}, "HOME"),
    ({"action": "up", "options": {"env": ["DJANGO_SETTINGS_MODULE=evil"]}}, "DJANGO_SETTINGS_MODULE"),
    ({"action": "up", "options": {"env": ["lower=1"]}}, "lower"),
    ({"action": "up", "options": {"env": "PASSWORD_ITERATIONS=1"}}, "env"),
    ({"action": "scale"}, "count"),
    ({"action": "run", "experiment": "gamble"}, "gamble"),
    ({"action": "run", "experiment": "fate", "args": {"out": "/etc"}}, "out"),
    ({"action": "run", "experiment": "fate", "args": {"minutes": 3}}, "minutes"),
    ({"action": "run", "experiment": "fate", "args": {"seconds": "soon"}}, "--seconds"),
])
def test_a_bad_request_is_a_400_naming_the_field(room, body, named):
    answer = room.act(**body) if body else room.http.post(
        f"{room.url}/api/actions", data="not json", headers={"X-CSRFToken": room.http.cookies["csrftoken"]})
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"] or body is None


def test_only_a_finished_runs_report_is_served(room):
    for path in ("/runs/../../etc/passwd", "/runs/20260101-000000-fate/report.html",
                 "/runs/..%2F..%2Fetc/report.html"):
        assert requests.get(f"{room.url}{path}", timeout=10).status_code == 404, path


def test_actions_without_a_cluster_are_409(room):
    for body in ({"action": "down"}, {"action": "load", "users": 5}, {"action": "kill", "target": "app1"}):
        answer = room.act(**body)
        assert answer.status_code == 409, (body, answer.text)
        assert "no cluster" in answer.json()["error"]


def test_up_starts_a_cluster_on_a_free_block(room):
    answer = room.act(action="up", options={"instances": 2, "sessions": "redis", "presence": "redis"})
    assert answer.status_code == 202, answer.text
    assert isinstance(answer.json()["id"], int)
    room.wait_serving(2)
    state = room.state()
    assert state["cluster"]["instances"] == 2 and state["cluster"]["sessions"] == "redis"
    kinds = {n["name"]: n["kind"] for n in state["nodes"]}
    assert {"haproxy": "haproxy", "app1": "instance", "redis1": "redis"}.items() <= kinds.items()
    assert room.node("redis1")["role"] == "primary"
    assert state["run"]["experiment"] == "control"
    assert room.act(action="up", options={}).status_code == 409


def test_every_fault_action_answers_and_shows(room):
    assert room.act(action="kill", target="app9").status_code == 404
    assert room.act(action="kill", target="pg:primary").status_code == 404
    for target in (5, ["app1"], {"name": "app1"}):  # checked before anything is recorded or sent
        assert room.act(action="kill", target=target).status_code == 400, target
    steps = [("kill", "app1", "down"), ("start", "app1", "up"), ("pause", "app1", "paused"),
             ("resume", "app1", "up"), ("term", "app2", "down"), ("start", "app2", "up")]
    for action, target, state in steps:
        answer = room.act(action=action, target=target)
        assert answer.status_code == 202, (action, answer.text)
        room.wait_until(lambda: room.node(target)["state"] == state, what=f"{target} {state} after {action}")
    assert room.act(action="scale", count=3).status_code == 202
    room.wait_serving(3)
    assert room.act(action="heal").status_code == 202
    # Without --netns nothing can be cut, and without PostgreSQL standbys nothing promoted: no sense now.
    assert room.act(action="partition", target="app1").status_code == 409
    assert room.act(action="promote").status_code == 409
    assert room.act(action="start", target="app1").status_code == 409  # already running
    assert room.act(action="latency", target="redis1", ms=5).status_code == 202
    room.wait_until(lambda: room.node("redis1").get("state") == "up", what="redis1 up with its latency")
    assert room.act(action="stall", target="redis1", seconds=0.5).status_code == 202
    assert set(deploy_cluster.ACTIONS) == {"kill", "term", "start", "pause", "resume", "partition", "heal",
                                           "powerloss", "promote", "scale", "latency", "stall"}, \
        "a new action: add it to this test"


def test_a_power_loss_takes_a_store_the_cluster_runs(room):
    # The target is a store (a server the cluster's nodes are of); this cluster has no PostgreSQL.
    assert room.act(action="powerloss", target="postgres").status_code == 404
    assert room.act(action="powerloss", target="memcached").status_code == 404
    # Redis it has, but not on power-loss disks (no --power-loss): deploy refuses, the room says 409.
    refused = room.act(action="powerloss", target="redis")
    assert refused.status_code == 409, refused.text
    assert "--power-loss" in refused.json()["error"]


def test_faults_stream_as_history_events_with_their_effect(room):
    killed = room.act(action="kill", target="app1")
    assert killed.status_code == 202, killed.text
    room.wait_until(lambda: room.node("app1")["state"] == "down", what="app1 down after kill")
    assert room.act(action="start", target="app1").status_code == 202
    room.wait_until(lambda: room.node("app1")["state"] == "up", what="app1 up after start")
    assert room.act(action="promote").status_code == 409  # refused: no standbys
    kill_id, seen = killed.json()["id"], {}

    def done():
        refused = [e for e in seen.values() if e["action"] == "promote" and e["id"] > kill_id]
        return kill_id in seen and seen[kill_id]["ended"] is not None and refused and refused[0]["ended"] is not None

    deadline = time.monotonic() + 60
    with room.http.get(f"{room.url}/api/events", stream=True, timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                event = json.loads(line[len("data: "):])
                if event["type"] == "fault":
                    seen[event["id"]] = event
            if done() or time.monotonic() > deadline:
                break
    assert done(), f"the stream did not show the kill and the refused promote within 60 s: {seen}"
    kill = seen[kill_id]
    assert kill["action"] == "kill" and kill["sent"] <= kill["effect"] <= kill["ended"]
    refused = [e for e in seen.values() if e["action"] == "promote" and e["id"] > kill_id]
    assert refused[0]["effect"] is None and "error" in refused[0]


def test_a_kill_from_a_terminal_shows_as_down(room):
    deploy(room.state_dir, "kill", "app3")
    returned = time.monotonic()
    room.wait_until(lambda: room.node("app3")["state"] == "down", seconds=10, what="app3 down on the page")
    # The target is 2 s; a busy machine gets 10 before this fails.
    assert time.monotonic() - returned < 10


def test_the_load_starts_resizes_and_stops(room):
    assert room.act(action="load", users=4).status_code == 202
    room.wait_until(lambda: room.state()["load"]["writes_acked"] > 20, what="acknowledged writes")
    assert room.act(action="load", users=2).status_code == 202
    room.wait_until(lambda: room.state()["load"]["users"] == 2, what="the load resized to 2 users")
    load = room.state()["load"]
    assert load["running"] and load["rps"] > 0 and load["p50_ms"] is not None
    assert sum(n["share"] for n in room.state()["nodes"] if n["kind"] == "instance") == pytest.approx(1, abs=0.01)
    assert room.act(action="load", users=0).status_code == 202
    room.wait_until(lambda: not room.state()["load"]["running"], what="the load stopped")
    stopped = room.settled_load()
    assert stopped["sessions_lost"] == 0 and stopped["writes_lost"] == 0
    assert room.act(action="load", users=0).status_code == 409


def test_down_stops_the_cluster_and_writes_the_runs_page(room):
    run_id = room.state()["run"]["id"]
    assert room.act(action="down").status_code == 202
    room.wait_until(lambda: room.state()["cluster"] is None, seconds=60, what="the cluster gone")
    state = room.state()
    assert state["nodes"] == [] and state["run"] is None
    assert deploy_cluster.load(room.state_dir) is None
    record = json.loads((room.runs / run_id / "run.json").read_text())
    assert record["kind"] == "control" and "verdict" not in record
    assert "kill" in requests.get(f"{room.url}/runs/{run_id}/report.html", timeout=10).text


def test_a_cluster_started_from_a_terminal_is_attached_to(room):
    clusters.up(room.state_dir, "--instances", "1", "--sessions", "redis", "--presence", "redis")
    room.wait_serving(1)
    state = room.state()
    assert state["cluster"]["instances"] == 1 and state["run"]["experiment"] == "control"
    assert room.act(action="down").status_code == 202
    room.wait_until(lambda: room.state()["cluster"] is None, seconds=60, what="the cluster gone")


@pytest.mark.timeout(300)
def test_a_harness_experiment_runs_from_the_page_to_its_verdict(room):
    args = {"scenarios": "lease", "seconds": 3, "users": 1}
    answer = room.act(action="run", experiment="fate", args=args)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["id"]
    assert room.act(action="run", experiment="fate", args=args).status_code == 409
    assert room.state()["run"] == {"id": run_id, "experiment": "fate", "started": room.state()["run"]["started"],
                                   "verdict": None}
    header = None
    with room.http.get(f"{room.url}/api/events", stream=True, timeout=120) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            event = json.loads(line[len("data: "):]) if line.startswith("data: ") else {}
            header = event if event.get("type") == "header" else header
            if event.get("type") == "fault":  # the experiment's history, followed as it is written
                break
    assert header["experiment"] == "fate"
    verdict = room.wait_until(lambda: room.state()["run"]["verdict"], seconds=240, what="the experiment's verdict")
    assert verdict["held"] in (True, False) and verdict["checks"]
    report = requests.get(f"{room.url}/runs/{run_id}/report.html", timeout=10)
    assert report.status_code == 200 and "hypothesis" in report.text
