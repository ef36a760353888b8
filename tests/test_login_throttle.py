"""Login throttling and sign-up rules through the load balancer, from distinct client addresses.

Every client here connects from an address of its own on loopback
(127.0.0.2, 127.0.0.3, ...). HAProxy connects to the instances from
127.0.0.9 and proves it is HAProxy by the cluster's secret header, not by
that address: any local process can connect from 127.0.0.9 too.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from deploy import cluster as deploy_cluster
from deploy import netns
from deploy.cluster import alive, wait_for
from tests.clusters import deploy, recorded_pids, up
from tests.http import Browser

PASSWORD = "correct horse battery"
LIMIT = 5  # LOGIN_MAX_FAILURES's default
SIGN_UPS = 10  # SIGNUP_MAX_PER_ADDRESS's default
WRONG = "Please enter a correct username and password"  # Django's form answer after a checked password


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One cluster for the module: two instances, counters in the shared Redis.

    Each test uses its own usernames and client addresses, so counters never mix.
    """
    state_dir = tmp_path_factory.mktemp("throttle") / "cluster"
    # Fewer PBKDF2 rounds than Django's, still enough for guesses in flight to overlap.
    cluster = up(state_dir, "--instances", "2", "--sessions", "redis", "--presence", "redis",
                 "--env=PASSWORD_ITERATIONS=200000")
    try:
        yield cluster
    finally:
        pids = recorded_pids(state_dir)
        deploy(state_dir, "down", check=False)
        assert not [pid for pid in pids if alive(pid)], "down left processes running"


def token(browser, url, username, password, **kwargs):
    return browser.post(f"{url}/api/token", json_body={"username": username, "password": password}, **kwargs)


def test_guesses_from_one_address_do_not_lock_out_the_owner_at_another(site):
    assert Browser(source="127.0.0.3").sign_up(site.url, "bob", PASSWORD).status == 302
    guesser = Browser(source="127.0.0.2")
    # Any spelling the form reads as bob counts for bob: stripped, NFKC, any case.
    spellings = ["bob", "BOB", " bob ", "ｂｏｂ", "bob", "bob", "bob"]
    answers = [guesser.log_in(site.url, name, "guess").status for name in spellings]
    assert answers == [200] * LIMIT + [429] * 2
    assert guesser.log_in(site.url, "bob", PASSWORD).status == 429
    assert token(guesser, site.url, "bob", PASSWORD).status == 429

    owner = Browser(source="127.0.0.3")
    assert owner.log_in(site.url, "bob", PASSWORD).status == 302
    assert owner.get(f"{site.url}/api/me").json()["username"] == "bob"
    assert token(Browser(source="127.0.0.3"), site.url, "bob", PASSWORD).status == 200


def test_parallel_guesses_get_at_most_the_limit_evaluated(site):
    assert Browser(source="127.0.0.5").sign_up(site.url, "erin", PASSWORD).status == 302
    guessers = [Browser(source="127.0.0.4") for _ in range(24)]
    for guesser in guessers:
        guesser.get(f"{site.url}/accounts/login/")  # the CSRF cookie
    start = threading.Barrier(len(guessers))

    def guess(guesser):
        start.wait(timeout=60)
        return guesser.post(f"{site.url}/accounts/login/", form={"username": "erin", "password": "guess"})

    with ThreadPoolExecutor(len(guessers)) as pool:
        answers = list(pool.map(guess, guessers))
    # A 200 is the form again after the password was hashed and checked; a
    # 429 was refused before any hashing.
    evaluated = [a for a in answers if a.status == 200]
    assert all(WRONG in a.body.decode() for a in evaluated)
    assert sorted(a.status for a in answers) == [200] * len(evaluated) + [429] * (24 - len(evaluated))
    assert len(evaluated) == LIMIT
    # Even five hashes at once can starve /healthz past HAProxy's 250 ms check
    # on two busy cores, and two failed checks take an instance out for about
    # a second: wait until both are back before the next login.
    wait_for(lambda: all(i["lb_state"] == "UP" for i in site.status()["instances"]), timeout=30,
             what="both instances UP in HAProxy after the burst", interval=0.25)
    assert Browser(source="127.0.0.5").log_in(site.url, "erin", PASSWORD).status == 302


def test_a_client_cannot_choose_its_address_with_x_forwarded_for(site):
    assert Browser(source="127.0.0.7").sign_up(site.url, "carol", PASSWORD).status == 302
    attacker = Browser(source="127.0.0.6")
    # A new address claimed each time, the victim's among them: were any
    # believed, the attacker would never be throttled, or would throttle the victim.
    claims = ["127.0.0.7", "10.0.0.1", "10.0.0.2, 127.0.0.7", "10.0.0.3", "10.0.0.4", "10.0.0.5", "127.0.0.7"]
    answers = [
        token(attacker, site.url, "carol", "guess", headers={"X-Forwarded-For": claim}).status for claim in claims
    ]
    assert answers == [401] * LIMIT + [429] * 2
    # Straight to an instance, past HAProxy, the header is not trusted either.
    direct = f"http://127.0.0.1:{site.instance('app1')['port']}"
    assert token(attacker, direct, "carol", PASSWORD, headers={"X-Forwarded-For": "10.0.0.9"}).status == 429
    assert token(Browser(source="127.0.0.7"), site.url, "carol", PASSWORD).status == 200


def guesses(browser, url, username, count, headers=lambda n: {}):
    return [token(browser, url, username, "guess", headers=headers(n)).status for n in range(count)]


def claim(n, **extra):
    """A new forwarded address for each guess: were any believed, no limit would ever be reached."""
    return {"X-Forwarded-For": f"10.1.0.{n}", **extra}


def test_only_haproxy_speaks_for_a_client(site):
    """Straight at an instance from HAProxy's own source address, a new X-Forwarded-For per guess is ignored."""
    direct = f"http://127.0.0.1:{site.instance('app1')['port']}"
    assert Browser(source="127.0.0.10").sign_up(site.url, "frank", PASSWORD).status == 302
    assert guesses(Browser(source="127.0.0.9"), direct, "frank", 8, claim) == [401] * LIMIT + [429] * 3
    # A client that names the secret header, with a wrong value, gets no trust, past HAProxy or through it.
    wrong = {"X-Lab-Proxy-Secret": "guessed"}
    assert guesses(Browser(source="127.0.0.11"), direct, "frank", 7,
                   lambda n: claim(n, **wrong)) == [401] * LIMIT + [429] * 2
    assert guesses(Browser(source="127.0.0.12"), site.url, "frank", 7,
                   lambda n: claim(n, **wrong)) == [401] * LIMIT + [429] * 2
    # Through HAProxy each real client still counts apart: the owner logs in.
    assert token(Browser(source="127.0.0.10"), site.url, "frank", PASSWORD).status == 200


def test_only_haproxy_speaks_for_a_client_in_network_namespaces(tmp_path):
    """With --netns, HAProxy's source address is on the bridge, and the root namespace can connect from it too."""
    if reason := netns.available():
        pytest.skip(reason)
    state_dir = tmp_path / "cluster"
    try:
        cluster = up(state_dir, "--instances", "1", "--netns", "--sessions", "redis", "--presence", "redis",
                     "--env=PASSWORD_ITERATIONS=1000")
        recorded = deploy_cluster.load(state_dir)
        assert Browser().sign_up(cluster.url, "heidi", PASSWORD).status == 302
        assert guesses(Browser(source=recorded.proxy_source), recorded.instance_url("app1"), "heidi", 7,
                       claim) == [401] * LIMIT + [429] * 2
    finally:
        deploy(state_dir, "down", check=False)


def test_a_weak_password_is_refused_at_sign_up(site):
    browser = Browser(source="127.0.0.8")
    refused = browser.sign_up(site.url, "dave", "a")
    assert refused.status == 200
    page = refused.body.decode()
    assert "This password is too short. It must contain at least 8 characters." in page
    assert "This password is too common." in page
    assert browser.get(f"{site.url}/api/me").status == 401
    assert browser.sign_up(site.url, "dave", PASSWORD).status == 302


def test_sign_ups_from_one_address_stop_at_the_limit_and_others_go_on(site):
    sender = "127.0.1.1"
    # A refused form (a weak password) hashed nothing, and gives its slot back.
    assert Browser(source=sender).sign_up(site.url, "weakling", "a").status == 200
    answers = [Browser(source=sender).sign_up(site.url, f"many{n}", PASSWORD) for n in range(SIGN_UPS + 2)]
    assert [a.status for a in answers] == [302] * SIGN_UPS + [429] * 2
    page = answers[-1].body.decode()
    assert f"at most {SIGN_UPS} per" in page and "SIGNUP_MAX_PER_ADDRESS" in page
    assert Browser(source=sender).log_in(site.url, f"many{SIGN_UPS}", PASSWORD).status == 200  # never made
    assert Browser(source="127.0.1.2").sign_up(site.url, "elsewhere", PASSWORD).status == 302


def test_logins_that_a_failed_database_left_unanswered_lock_nobody_out(tmp_path):
    # The users in PostgreSQL, the counters in Redis: while the database is down each login is a 503 naming it,
    # and none of them counts against the user or the address once it is back.
    state_dir = tmp_path / "cluster"
    cluster = up(state_dir, "--instances", "1", "--sessions", "redis", "--presence", "redis", "--db", "postgres")
    try:
        client = Browser(source="127.0.2.1")
        assert client.sign_up(cluster.url, "carol", PASSWORD).status == 302
        deploy(state_dir, "kill", "pg1")
        answers = [Browser(source="127.0.2.1").log_in(cluster.url, "carol", PASSWORD).status
                   for _ in range(LIMIT + 2)]
        answers.append(token(Browser(source="127.0.2.1"), cluster.url, "carol", PASSWORD).status)
        assert answers == [503] * (LIMIT + 3)
        deploy(state_dir, "start", "pg1")
        wait_for(lambda: Browser().get(f"{cluster.url}/readyz").status == 200, timeout=60, interval=0.5,
                 what="the site to answer /readyz with the database back")
        assert Browser(source="127.0.2.1").log_in(cluster.url, "carol", PASSWORD).status == 302
        assert token(Browser(source="127.0.2.1"), cluster.url, "carol", PASSWORD).status == 200
    finally:
        pids = recorded_pids(state_dir)
        deploy(state_dir, "down", check=False)
        assert not [pid for pid in pids if alive(pid)], "down left processes running"
