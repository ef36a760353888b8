"""Real clusters: gunicorn instances behind HAProxy, started and broken by `python -m deploy`."""

import os
import pwd
import sqlite3
import stat
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from deploy import cluster as deploy_cluster
from deploy import sizing
from deploy.cluster import DeployError, require, run_all
from tests.clusters import deploy
from tests.http import Browser

PASSWORD = "correct horse battery"


def served_by(response):
    return response.headers["X-Served-By"]


# Spreading and pinning


def test_roundrobin_spreads_requests_over_instances(cluster):
    c = cluster(instances=2)
    browser = Browser()
    seen = [served_by(browser.get(f"{c.url}/healthz")) for _ in range(6)]
    assert set(seen) == {"app1", "app2"}
    assert seen[:2] != [seen[0]] * 2


def test_sticky_pins_a_client_to_one_instance(cluster):
    c = cluster(instances=2, lb="sticky")
    browser = Browser()
    seen = {served_by(browser.get(f"{c.url}/healthz")) for _ in range(6)}
    assert len(seen) == 1
    assert browser.cookie("SERVERID") == seen.pop()
    others = {served_by(Browser().get(f"{c.url}/healthz")) for _ in range(4)}
    assert others == {"app1", "app2"}


# Killing the instance that served a logged-in client


@pytest.mark.parametrize("sessions", ["redis", "db", "cached_db", "memcached", "signed_cookies"])
def test_shared_sessions_survive_the_kill(cluster, sessions):
    c = cluster(instances=2, sessions=sessions, presence="redis", lb="sticky")
    ada = Browser()
    assert ada.sign_up(c.url, "ada", PASSWORD).status == 302
    before = ada.get(f"{c.url}/api/me")
    assert before.status == 200
    c.run("kill", served_by(before))
    after = ada.get(f"{c.url}/api/me")
    assert (after.status, after.json()["username"]) == (200, "ada")
    assert served_by(after) != served_by(before)


def test_memory_sessions_behind_sticky_die_with_their_instance(cluster):
    c = cluster(instances=2, sessions="memory", presence="memory", lb="sticky")
    ada = Browser()
    assert ada.sign_up(c.url, "ada", PASSWORD).status == 302
    before = ada.get(f"{c.url}/api/me")
    assert before.status == 200
    assert all(ada.get(f"{c.url}/api/me").status == 200 for _ in range(3))
    c.run("kill", served_by(before))
    after = ada.get(f"{c.url}/api/me")
    assert after.status == 401
    assert served_by(after) != served_by(before)


def test_memory_sessions_behind_roundrobin_do_not_survive_the_next_request(cluster):
    c = cluster(instances=2, sessions="memory", presence="memory", lb="roundrobin")
    ada = Browser()
    signed_up = ada.sign_up(c.url, "ada", PASSWORD)
    assert signed_up.status == 302
    following = ada.get(f"{c.url}/api/me")
    assert served_by(following) != served_by(signed_up)
    assert following.status == 401


# Presence across instances


@pytest.mark.parametrize(("presence", "shared"), [("redis", True), ("memory", False)])
def test_presence_is_shared_only_through_redis(cluster, presence, shared):
    c = cluster(instances=2, sessions="redis", presence=presence, lb="roundrobin")
    ada, bob = Browser(), Browser()
    ada.sign_up(c.url, "ada", PASSWORD)
    bob.sign_up(c.url, "bob", PASSWORD)
    to_ada = ada.post(f"{c.url}/api/rooms/lobby/presence")
    to_bob = bob.post(f"{c.url}/api/rooms/lobby/presence")
    assert served_by(to_ada) != served_by(to_bob)
    assert to_bob.json()["online"] == (["ada", "bob"] if shared else ["bob"])


# Graceful removal and scaling under steady traffic


class SteadyTraffic:
    """Logged-in users polling and posting in a loop, counting every failure."""

    def __init__(self, url, users, *, max_seconds=120):
        self.url, self.users, self.max_seconds = url, users, max_seconds
        self.ok, self.failures, self.served = 0, [], {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(u,), daemon=True) for u in users]

    def _loop(self, browser):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            for method, path, body in (
                ("GET", "/api/me", None),
                ("GET", "/api/rooms/lobby/messages?limit=5", None),
                ("POST", "/api/rooms/lobby/messages", {"text": "tick", "client_id": str(uuid.uuid4())}),
            ):
                try:
                    response = browser.request(method, f"{self.url}{path}", json_body=body)
                    good = response.status in (200, 201)
                except OSError as exc:
                    response, good = exc, False
                if good:
                    self.ok += 1
                    name = response.headers["X-Served-By"]
                    self.served[name] = self.served.get(name, 0) + 1
                else:
                    self.failures.append((method, path, getattr(response, "status", response)))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_for_requests(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        target = self.ok + count
        while self.ok < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.ok >= target, f"traffic stalled at {self.ok} requests"


def logged_in_users(url, count):
    users = []
    for n in range(count):
        browser = Browser()
        assert browser.sign_up(url, f"user{n}", PASSWORD).status == 302
        users.append(browser)
    return users


def test_graceful_term_fails_no_request_and_moves_sticky_clients(cluster):
    c = cluster(instances=2, sessions="redis", lb="sticky")
    users = logged_in_users(c.url, 4)
    pinned = {u.cookie("SERVERID") for u in users}
    assert pinned == {"app1", "app2"}, "want clients pinned to both instances"
    with SteadyTraffic(c.url, users) as traffic:
        traffic.wait_for_requests(60)
        c.run("kill", "app2", "--signal", "TERM")
        assert not c.instance("app2")["alive"]
        before = dict(traffic.served)
        traffic.wait_for_requests(60)
    assert traffic.failures == []
    assert traffic.served.get("app2", 0) == before.get("app2", 0), "app2 got requests after its removal"


def test_scale_out_in_and_out_again_fails_no_request(cluster):
    c = cluster(instances=2, sessions="redis", lb="roundrobin")
    users = logged_in_users(c.url, 4)
    with SteadyTraffic(c.url, users) as traffic:
        traffic.wait_for_requests(40)
        c.run("scale", "3")
        assert [i["lb_state"] for i in c.status()["instances"]] == ["UP", "UP", "UP"]
        traffic.wait_for_requests(60)
        assert traffic.served.get("app3", 0) > 0
        c.run("scale", "1")
        assert [i["name"] for i in c.status()["instances"]] == ["app1"]
        traffic.wait_for_requests(40)
        c.run("scale", "2")  # app2 again, on the port its relay held before it was scaled away
        assert [i["lb_state"] for i in c.status()["instances"]] == ["UP", "UP"]
        traffic.wait_for_requests(40)
    assert traffic.failures == []


def test_killed_instance_comes_back_with_start(cluster):
    c = cluster(instances=2)
    c.run("kill", "app1")
    assert c.instance("app1")["alive"] is False
    c.run("start", "app1")
    assert (c.instance("app1")["alive"], c.instance("app1")["lb_state"]) == (True, "UP")


# status --json's schema (docs/operations/deploy.md): later versions only add fields.
STATES = {"up", "down", "draining", "paused", "partitioned"}
STORE_ROLES = {"primary", "replica", "standby", "sentinel", "leader", "follower", "candidate", "down", "unreachable"}
TOP = {"url", "stats_url", "lb", "sessions", "presence", "db", "durable", "haproxy", "topology", "network",
       "partitions", "cpu", "stores", "instances", "server", "channel_layer", "relays"}
INSTANCE = {"name", "host", "port", "pid", "alive", "lb_state", "state", "role", "sockets"}
STORE = {"name", "kind", "role", "host", "port", "socket", "pid", "alive", "state"}


def check_schema(status):
    assert TOP <= set(status) and set(status["haproxy"]) >= {"pid", "alive"}
    assert all(set(cut) == {"isolated", "from"} for cut in status["partitions"])
    for row in status["instances"]:
        assert INSTANCE <= set(row) and row["state"] in STATES and row["role"] is None, row
    for row in status["stores"]:
        assert STORE <= set(row) and row["state"] in STATES and row["role"] in STORE_ROLES, row
        assert row["kind"] in deploy_cluster.KINDS or row["kind"] in {"redis", "sentinel"}, row


def states(c):
    status = c.status()
    check_schema(status)
    return {row["name"]: row["state"] for row in [*status["instances"], *status["stores"]]}


def test_status_json_follows_its_schema_through_every_state(cluster):
    c = cluster(instances=2, sessions="redis", presence="redis")
    assert states(c) == {"app1": "up", "app2": "up", "redis1": "up"}
    c.run("kill", "app1")
    c.run("pause", "redis1")
    runtime = deploy_cluster.load(c.state_dir).runtime
    runtime.set_state("app2", "maint")  # what `kill --signal TERM` and `scale` do before the stop
    assert states(c) == {"app1": "down", "app2": "draining", "redis1": "paused"}
    runtime.set_state("app2", "ready")
    c.run("resume", "redis1")
    c.run("start", "app1")
    assert states(c) == {"app1": "up", "app2": "up", "redis1": "up"}


def test_a_relative_state_folder_works(cluster):
    # HAProxy reads a relative socket path as host:port; deploy must not pass one.
    c = cluster(instances=1, state_dir=Path("state") / f"test-relative-{uuid.uuid4().hex[:8]}")
    assert c.instance("app1")["lb_state"] == "UP"


def test_middleware_off_is_taken_for_one_cluster_never_from_the_shell(cluster, monkeypatch):
    # A bench run that starts memory as it ships beside memory:MIDDLEWARE_OFF=all must not strip both.
    monkeypatch.setenv("MIDDLEWARE_OFF", "all")
    shipped = cluster(instances=1, sessions="memory", presence="memory")
    assert "X-Served-By" in Browser().get(f"{shipped.url}/healthz").headers
    stripped = cluster(instances=1, sessions="memory", presence="memory",
                       env={"MIDDLEWARE_OFF": "ServedByMiddleware"})
    assert "X-Served-By" not in Browser().get(f"{stripped.url}/healthz").headers


@pytest.mark.parametrize("server", ["sync", "gevent", "granian:4"])
def test_every_server_choice_serves_the_site(cluster, server):
    c = cluster(instances=1, sessions="redis", server=server, env={"PASSWORD_ITERATIONS": 1000})
    ada = Browser()
    assert ada.sign_up(c.url, "ada", PASSWORD).status == 302
    sent = ada.post(f"{c.url}/api/rooms/lobby/messages", json_body={"text": "hi", "client_id": str(uuid.uuid4())})
    assert sent.status == 201
    assert ada.get(f"{c.url}/api/rooms/lobby/messages?after=0").json()["messages"][0]["text"] == "hi"
    # Only HAProxy speaks for a client, under every server: straight at the instance from HAProxy's
    # own source address, a new X-Forwarded-For per guess is not believed, so the limit (5) holds.
    direct, guesser = f"http://127.0.0.1:{c.instance('app1')['port']}", Browser(source="127.0.0.9")
    answers = [guesser.post(f"{direct}/api/token", json_body={"username": "ada", "password": "guess"},
                            headers={"X-Forwarded-For": f"10.1.0.{n}"}).status for n in range(6)]
    assert answers == [401] * 5 + [429]


def test_postgres_cluster(cluster):
    c = cluster(instances=2, sessions="db", presence="redis", db="postgres")
    ada = Browser()
    assert ada.sign_up(c.url, "ada", PASSWORD).status == 302
    assert ada.get(f"{c.url}/api/me").json()["username"] == "ada"
    assert {s["name"]: s["role"] for s in c.status()["stores"]} == {"pg1": "primary", "redis1": "primary"}


@pytest.mark.timeout(400)
def test_sixteen_instances_on_postgres_start_and_serve(cluster):
    c = cluster(instances=sizing.MAX_INSTANCES, sessions="db", presence="redis", db="postgres")
    ports = [i["port"] for i in c.status()["instances"]]
    assert len(ports) == 16

    def burst(port):
        # A request per thread at once, so each instance opens the connections it keeps.
        with ThreadPoolExecutor(sizing.THREADS) as pool:
            return list(pool.map(lambda _: Browser().get(f"http://127.0.0.1:{port}/readyz").status,
                                 range(sizing.THREADS)))

    with ThreadPoolExecutor(4) as pool:
        statuses = [status for statuses in pool.map(burst, ports) for status in statuses]
    assert statuses == [200] * 16 * sizing.THREADS
    assert Browser().get(f"{c.url}/readyz").status == 200
    (postgres,) = [node for node in deploy_cluster.load(c.state_dir).stores.values() if node["kind"] == "postgres"]
    with psycopg.connect(deploy_cluster.server_settings("postgres", postgres)["DATABASE_URL"]) as db:
        allowed = int(db.execute("SHOW max_connections").fetchone()[0])
        used = db.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]
    assert allowed >= 16 * sizing.DB_CONNECTIONS_PER_INSTANCE + sizing.DB_HEADROOM
    print(f"16 instances: {used} connections open of {allowed}")


# What `down` leaves, and folders deploy did not make


def test_down_leaves_only_the_logs_and_no_secret(cluster, tmp_path):
    state = tmp_path / "state"
    c = cluster(instances=1, sessions="file", presence="redis", state_dir=state)
    ada = Browser()
    assert ada.sign_up(c.url, "ada", PASSWORD).status == 302
    record = deploy_cluster.load(state)
    with sqlite3.connect(state / "site.sqlite3") as db:
        (password_hash,) = db.execute("SELECT password FROM auth_user WHERE username = 'ada'").fetchone()
    secrets = {"SECRET_KEY": record.secret_key, "ada's password hash": password_hash, "ada's password": PASSWORD,
               "ada's session key": ada.cookie("sessionid"),
               **{f"{name}'s password": node["password"] for name, node in record.stores.items()}}
    assert {"redis1", "cluster.json", "site.sqlite3", "sessions"} <= {*record.stores, *os.listdir(state)}

    c.run("down")
    assert sorted(os.listdir(state)) == [deploy_cluster.MARKER, "logs"]
    assert os.listdir(state / "logs")  # the logs stay, to read after the run
    for log in (state / "logs").iterdir():
        text = log.read_text(errors="replace")
        assert [what for what, secret in secrets.items() if secret in text] == [], log


def test_a_state_folder_deploy_did_not_make_is_left_untouched(tmp_path):
    mine = tmp_path / "mine"
    (mine / "precious").mkdir(parents=True)
    (mine / "precious" / "thesis.tex").write_text("years of work")
    mine.chmod(0o755)
    before = sorted(str(path.relative_to(mine)) for path in mine.rglob("*"))
    up = deploy(mine, "up", "--instances", "1", "--sessions", "signed_cookies", "--presence", "memory",
                "--port", str(deploy_cluster.free_base_port()), check=False)
    try:
        assert up.returncode == 1 and "was not made by deploy" in up.stderr, up.stderr
    finally:
        deploy(mine, "down", check=False)
    # A record planted there, naming the folder as a store's data: `down` removes nothing it names.
    deploy_cluster.Cluster(state_dir=str(mine), port=1, lb="roundrobin", sessions="db", presence="memory", db="sqlite",
                   secret_key="x", stores={"redis1": {"kind": "redis", "port": 2, "data": str(mine / "precious")}}
                   ).save()
    down = deploy(mine, "down", check=False)
    assert down.returncode == 1 and "nothing stopped or removed" in down.stderr, down.stderr
    (mine / "cluster.json").unlink()
    assert sorted(str(path.relative_to(mine)) for path in mine.rglob("*")) == before
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a folder to another user: needs root")
def test_a_marked_folder_of_another_user_is_not_deploys(tmp_path):
    theirs = tmp_path / "theirs"
    elsewhere = tmp_path / "elsewhere"
    for folder in (theirs, elsewhere):
        folder.mkdir()
        folder.chmod(0o755)
    (theirs / deploy_cluster.MARKER).touch()
    (theirs / "logs").symlink_to(elsewhere)
    nobody = pwd.getpwnam("nobody").pw_uid
    for path in (theirs / deploy_cluster.MARKER, theirs):
        os.lchown(path, nobody, nobody)
    assert not deploy_cluster.made_by_deploy(theirs)
    with pytest.raises(DeployError, match="was not made by deploy"):
        deploy_cluster.make_private_folder(theirs)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755 and stat.S_IMODE(theirs.stat().st_mode) == 0o755
    # Ours, marked, but its logs a link to somewhere else: refused, the link's target untouched.
    os.lchown(theirs, os.geteuid(), os.getegid())
    os.lchown(theirs / deploy_cluster.MARKER, os.geteuid(), os.getegid())
    with pytest.raises(DeployError, match="is not a folder of ours"):
        deploy_cluster.make_private_folder(theirs)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_a_folder_from_before_the_marker_can_still_be_stopped(tmp_path):
    state = tmp_path / "state"
    deploy_cluster.make_private_folder(state)
    deploy_cluster.Cluster(state_dir=str(state), port=1, lb="roundrobin", sessions="db", presence="memory", db="sqlite",
                   secret_key="x").save()
    (state / deploy_cluster.MARKER).unlink()
    assert deploy_cluster.made_by_deploy(state) and (state / deploy_cluster.MARKER).is_file()
    # The same without a record only we can read: not deploy's.
    (state / deploy_cluster.MARKER).unlink()
    (state / "cluster.json").chmod(0o644)
    assert not deploy_cluster.made_by_deploy(state)


def test_the_record_is_written_whole_or_not_at_all(tmp_path):
    deploy_cluster.make_private_folder(tmp_path / "state")
    record = deploy_cluster.Cluster(state_dir=str(tmp_path / "state"), port=1, lb="roundrobin", sessions="db",
                            presence="memory", db="sqlite", secret_key="x")
    record.save()
    record.env = {"unwritable": object()}  # json.dump fails half-way, as a crash would
    with pytest.raises(TypeError):
        record.save()
    assert deploy_cluster.load(tmp_path / "state").env == {}
    assert sorted(os.listdir(tmp_path / "state")) == [deploy_cluster.MARKER, "cluster.json", "logs"]


# Clear one-line errors


def test_up_twice_and_busy_ports_are_clear_errors(cluster, tmp_path):
    c = cluster(instances=1)
    again = deploy(c.state_dir, "up", "--port", c.url.rsplit(":", 1)[1], check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == f"deploy: a cluster is already up at {c.url}; stop it with: python -m deploy down"
    busy = deploy(tmp_path / "other", "up", "--port", c.url.rsplit(":", 1)[1], check=False)
    assert busy.returncode == 1
    assert "is busy" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1


def test_bad_arguments_are_clear_errors(tmp_path):
    for args, named in (
        (["up", "--sessions", "floppy"], "--sessions 'floppy' is not one of"),
        (["up", "--lb", "random"], "--lb 'random' is not one of"),
        (["kill", "app1"], "no cluster is up"),
    ):
        done = deploy(tmp_path, *args, check=False)
        assert done.returncode == 1 and named in done.stderr, done.stderr


def test_missing_binary_says_how_to_install_it():
    with pytest.raises(DeployError, match="apt-get install -y some-package"):
        require("no-such-binary-anywhere", "some-package")


def test_teardown_runs_every_step_and_raises_the_first_failure_with_the_others_noted():
    ran = []

    def fails(name):
        ran.append(name)
        raise DeployError(f"{name} would not stop")

    with pytest.raises(DeployError, match="haproxy would not stop") as raised:
        run_all([lambda: fails("haproxy"), lambda: ran.append("app1"), lambda: fails("redis1"),
                 lambda: ran.append("namespaces")])
    assert ran == ["haproxy", "app1", "redis1", "namespaces"]
    assert raised.value.__notes__ == ["also failed: DeployError('redis1 would not stop')"]
