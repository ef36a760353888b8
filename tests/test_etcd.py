"""Sessions in etcd, a majority store: they survive the loss of the leader, and nothing is written without a majority.

Kept out of the per-store matrix in conftest (it starts its own etcd
cluster, which the matrix's shared servers do not include). The first tests
run the engine in process over a bare 3-member cluster; the last deploys
the site with `python -m deploy up --sessions etcd` and breaks it with deploy.
"""

import time
import uuid

import pytest
import requests
from django.test import Client

from deploy import cluster as deploy_cluster
from deploy.cluster import DeployError, Topology, etcd, wait_for
from labcore.etcd import parse_etcd_endpoints, parse_etcd_tls
from tests.conftest import use_etcd
from tests.http import Browser
from tests.servers import EtcdCluster

PASSWORD = "correct horse battery"


@pytest.fixture
def members():
    cluster = EtcdCluster(3)
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd_sessions(settings, members, redis_service, memcached_service, redis_db, tmp_path, db):
    return use_etcd(settings, members, presence_store="redis", redis=redis_service, memcached=memcached_service,
                    tmp_path=tmp_path)


def logged_in_users(django_user_model, count):
    clients = []
    for n in range(count):
        django_user_model.objects.create_user(f"user{n}", password=PASSWORD)
        client = Client()
        assert client.post("/accounts/login/", {"username": f"user{n}", "password": PASSWORD}).status_code == 302
        clients.append(client)
    return clients


def test_login_logout_and_readiness(etcd_sessions, client, django_user_model):
    (ada,) = logged_in_users(django_user_model, 1)
    assert ada.get("/api/me").json()["session_store"] == "etcd"
    old_cookie = ada.cookies["sessionid"].value
    assert client.get("/readyz").json()["checked"] == ["database", "sessions", "counters", "presence"]
    assert ada.post("/accounts/logout/").status_code == 302
    replay = Client()
    replay.cookies["sessionid"] = old_cookie
    assert replay.get("/api/me").status_code == 401


def test_every_login_survives_the_loss_of_the_leader(etcd_sessions, django_user_model):
    users = logged_in_users(django_user_model, 10)
    old = etcd_sessions.leader()
    etcd_sessions.kill(old)
    new = wait_for(lambda: (name := etcd_sessions.leader()) not in (None, old) and name, timeout=30,
                   what="a new etcd leader")
    # A call may land on the dead member first; the client moves on to the next.
    assert [u.get("/api/me").status_code for u in users] == [200] * 10, f"leader {old} -> {new}"


def test_without_a_majority_nothing_is_written_or_read(etcd_sessions, django_user_model, settings):
    (ada,) = logged_in_users(django_user_model, 1)
    django_user_model.objects.create_user("bob", password=PASSWORD)
    followers = [m["name"] for m in etcd_sessions.members if m["name"] != etcd_sessions.leader()]
    for name in followers:
        etcd_sessions.kill(name)
    # etcd itself would hold such a request for seconds; the client gives up
    # after STORE_TIMEOUT. The bound leaves room for a busy machine.
    bound = 4 * settings.STORE_TIMEOUT + 2
    for call in (lambda: ada.get("/api/me"),
                 lambda: Client().post("/accounts/login/", {"username": "bob", "password": PASSWORD})):
        started = time.monotonic()
        response = call()
        elapsed = time.monotonic() - started
        assert response.status_code == 503 and "etcd" in response.content.decode()
        assert elapsed < bound, elapsed

    etcd_sessions.start(followers[0])
    wait_for(lambda: ada.get("/api/me").status_code == 200, timeout=30, what="etcd serving again with a majority")


def test_a_session_keeps_one_lease_and_logout_leaves_none(etcd_sessions, django_user_model):
    client = etcd_sessions.client()

    def leases():
        return client.post(client.get_url("/lease/leases"), json={}).get("leases", [])

    (ada,) = logged_in_users(django_user_model, 1)
    session = ada.session
    for n in range(5):
        session["counter"] = n
        session.save()
    assert len(leases()) == 1
    assert ada.post("/accounts/logout/").status_code == 302
    assert leases() == []


@pytest.mark.parametrize("endpoints", ["127.0.0.1:23x9", "127.0.0.1:99999", "127.0.0.1:0", "lab:pw@127.0.0.1:2379"])
def test_a_bad_etcd_endpoint_is_refused_naming_the_setting(endpoints):
    with pytest.raises(ValueError, match="ETCD_ENDPOINTS"):
        parse_etcd_endpoints(f"127.0.0.1:2379,{endpoints}")
    with pytest.raises(ValueError, match="ETCD_CA, ETCD_CERT and ETCD_KEY"):
        parse_etcd_tls("/ca.pem", "", "")
    assert parse_etcd_endpoints(" 127.0.0.1:2379, 10.0.0.2 ,") == (("127.0.0.1", 2379), ("10.0.0.2", 2379))


@pytest.mark.parametrize("members", [1, 2, 4, 9])
def test_deploy_takes_3_5_or_7_members(members):
    with pytest.raises(DeployError, match="--etcd-members must be one of 3, 5, 7"):
        Topology(etcd_members=members).check()


def etcd_roles(c):
    return {name: role for name, role in c.roles().items() if name.startswith("etcd")}


def test_deployed_etcd_keeps_every_login_when_deploy_kills_its_leader(cluster):
    c = cluster(instances=2, sessions="etcd")
    roles = etcd_roles(c)
    assert sorted(roles.values()) == ["follower", "follower", "leader"], roles
    etcd1 = deploy_cluster.load(c.state_dir).stores["etcd1"]
    with pytest.raises(requests.ConnectionError):  # only a holder of the cluster's certificate may speak
        requests.post(f"https://{etcd1['host']}:{etcd1['port']}/v3/kv/range", json={"key": "AA=="}, timeout=5,
                      verify=etcd.client_tls(etcd1)["cacert"])
    users = []
    for _ in range(5):
        browser = Browser()
        assert browser.sign_up(c.url, f"u{uuid.uuid4().hex[:10]}", PASSWORD).status == 302  # logged in
        users.append(browser)

    old = next(name for name, role in roles.items() if role == "leader")
    assert c.run("kill", "etcd:leader").stdout.strip() == f"{old} killed"
    new = wait_for(lambda: next((n for n, r in etcd_roles(c).items() if r == "leader"), None), timeout=30,
                   what="a new etcd leader")
    assert new != old and etcd_roles(c)[old] == "down"
    assert [u.get(f"{c.url}/api/me").status for u in users] == [200] * 5

    c.run("start", old)  # it rejoins with its data, as a follower of the new leader
    wait_for(lambda: etcd_roles(c)[old] == "follower", timeout=30, what=f"{old} back as a follower")
