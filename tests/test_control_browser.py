"""The control room in Chromium: start a cluster from the page, put 20 users on it, kill app1, watch what they lose.

Screenshots go to state/screenshots/ (or $SCREENSHOT_DIR), as the other
browser tests'; docs/screenshots/control-room-*.png are copies.
"""

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.controlroom import ControlRoom
from tests.test_browser import CHROMIUM, FLAGS, shoot

USERS = 20
SOON = 30_000  # ms: polls, generous for a busy machine
START = 120_000  # ms: a cluster started from the page


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def room_page(chromium, tmp_path):
    room = ControlRoom(tmp_path / "cluster", tmp_path / "runs")
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(SOON)
    opened = context.new_page()
    opened.goto(room.url)
    yield opened, room
    context.close()
    left = room.stop()
    assert not left, f"processes left: {left}"


def counter(page, name):
    return page.locator(f"#{name}")


def start_cluster_and_load(page, sessions, presence):
    form = page.locator("#up-form")
    form.locator("input[name=instances]").fill("3")
    form.locator("input[name=sessions]").fill(sessions)
    form.locator("input[name=presence]").fill(presence)
    form.locator("input[name=lb]").fill("sticky")
    page.get_by_role("button", name="Start cluster").click()
    for name in ("haproxy", "app1", "app2", "app3"):
        expect(page.locator(f"#node-{name}")).to_have_attribute("data-state", "up", timeout=START)
    page.get_by_label("Users", exact=True).fill(str(USERS))
    page.get_by_role("button", name="Start or resize").click()
    expect(counter(page, "users-now")).to_have_text(str(USERS))
    # Every user logged in and writing a while: acknowledged writes many times the users.
    page.wait_for_function(f"Number(document.getElementById('writes_acked').textContent) > {8 * USERS}",
                           timeout=SOON)


def kill_app1(page):
    """Kill app1 from its card; wait until the page shows it down and every user has gone on a while."""
    before = int(counter(page, "writes_acked").inner_text())
    page.get_by_role("button", name="kill app1", exact=True).click()
    expect(page.locator("#node-app1")).to_have_attribute("data-state", "down")
    expect(page.locator("#node-app1 .state")).to_have_text("down")
    page.wait_for_function(f"Number(document.getElementById('writes_acked').textContent) > {before + 10 * USERS}",
                           timeout=SOON)


def stop_load(page, room):
    """Stop the load from the page; the final figures (every session read back), as the page shows them."""
    page.get_by_role("button", name="Stop load").click()
    expect(counter(page, "users-now")).to_have_text("not running")
    final = room.settled_load()
    expect(counter(page, "sessions_lost")).to_have_text(str(final["sessions_lost"]))
    return final


def test_a_kill_costs_a_third_of_the_users_with_memory_sessions(room_page):
    page, room = room_page
    start_cluster_and_load(page, "memory", "memory")
    kill_app1(page)
    # Sticky sessions spread 20 users over 3 instances: about 7 had theirs on app1.
    expect(counter(page, "sessions_lost")).to_have_text(re.compile(r"^[4-9]$"))
    expect(page.locator("#fault-list")).to_contain_text("kill app1: sent")
    shoot(page, "control-room-memory")
    assert 4 <= stop_load(page, room)["sessions_lost"] <= 9


def test_a_kill_costs_nobody_with_redis_sessions(room_page):
    page, room = room_page
    start_cluster_and_load(page, "redis", "redis")
    kill_app1(page)  # and requests went on: 10 acknowledged writes per user since
    expect(page.locator("#node-app2 .share-text")).not_to_have_text(re.compile(r"^0 %"))
    expect(counter(page, "sessions_lost")).to_have_text("0")
    shoot(page, "control-room-redis")
    final = stop_load(page, room)
    assert final["sessions_lost"] == 0 and final["writes_lost"] == 0
