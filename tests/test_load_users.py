"""The experiment's users and audit at its user counts, with every limit as the site ships it.

The load's users are made beforehand through deploy (loadtest/harness/accounts.py)
and the audit reads with a token from deploy (loadtest/harness/audit.py): neither
signs up or logs in where the per-address limits could refuse it, and the
experiment's cluster lifts no limit that anyone else on this machine could
then use.
"""

import io
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.forms import UserCreationForm
from django.core.management import CommandError, call_command

from deploy import cluster as deploy
from deploy.cluster import free_base_port
from loadtest.experiments import configs as experiment
from loadtest.harness import accounts
from loadtest.harness.audit import AUDITOR, audit_messages
from tests.http import Browser

USERS = 450  # the quick experiment's largest step
ROOMS = 4
SIGN_UPS = 10  # SIGNUP_MAX_PER_ADDRESS's default
FAILURES_PER_ADDRESS = 50  # LOGIN_MAX_FAILURES_PER_ADDRESS's default


def logged_in(url, username):
    browser = Browser()
    assert browser.log_in(url, username, accounts.PASSWORD).status == 302, username
    return browser


def post(browser, url, room):
    """(client_id, room, id) of an acknowledged message."""
    client_id = str(uuid.uuid4())
    answer = browser.post(f"{url}/api/rooms/{room}/messages", json_body={"text": "hello", "client_id": client_id})
    assert answer.status == 201, answer.body[:300]
    return client_id, room, answer.json()["id"]


@pytest.mark.timeout(600)
def test_the_audit_reads_every_users_messages_while_this_address_is_throttled(tmp_path):
    state_dir = tmp_path / "cluster"
    cluster = experiment.up(experiment.parse_config("redis"), instances=2, port=free_base_port(),
                            state_dir=state_dir)
    try:
        names = accounts.prepare(USERS, state_dir=state_dir)
        rooms = [f"room{n % ROOMS}" for n in range(USERS)]
        with ThreadPoolExecutor(8) as pool:
            browsers = list(pool.map(lambda name: logged_in(cluster.url, name), names))
            posted = list(pool.map(lambda b, r: post(b, cluster.url, r), browsers, rooms))

        # From this machine, sign-ups and wrong guesses meet the limits the site ships with.
        sign_ups = [Browser().sign_up(cluster.url, f"walk-in{n}", accounts.PASSWORD).status
                    for n in range(SIGN_UPS + 1)]
        assert sign_ups == [302] * SIGN_UPS + [429]
        guesses = [Browser().log_in(cluster.url, f"nobody{n}", "wrong").status
                   for n in range(FAILURES_PER_ADDRESS + 1)]
        assert guesses[-1] == 429

        # Each user followed its room from the start and saw every message in it once.
        ids = {room: {str(i): 1 for _, r, i in posted if r == room} for room in set(rooms)}
        pollers = {name: {"room": room, "first_cursor": 0, "last_cursor": max(map(int, ids[room])),
                          "seen": ids[room]} for name, room in zip(names, rooms)}
        audit = audit_messages(cluster.url, [(c, r) for c, r, _ in posted], pollers, state_dir=state_dir)
    finally:
        deploy.down(state_dir)
    assert (audit["acknowledged"], audit["stored"], audit["lost"], audit["duplicated"]) == (USERS, USERS, 0, 0)
    assert (audit["pollers"]["users"], audit["pollers"]["expected"]) == (USERS, sum(len(ids[r]) for r in rooms))
    assert (audit["pollers"]["missed"], audit["pollers"]["seen_twice"]) == (0, 0)


def test_the_audit_user_cannot_be_taken_by_a_sign_up_nor_its_token_issued_for_one(db, django_user_model):
    form = UserCreationForm(data={"username": AUDITOR, "password1": "a long pass phrase", "password2":
                                  "a long pass phrase"})
    assert not form.is_valid() and "username" in form.errors
    out = io.StringIO()
    call_command("api_token", AUDITOR, stdout=out)
    assert out.getvalue().strip() and not django_user_model.objects.get(username=AUDITOR).has_usable_password()
    django_user_model.objects.create_user("taken", password="a long pass phrase")
    with pytest.raises(CommandError, match="has a password"):
        call_command("api_token", "taken", stdout=io.StringIO())
