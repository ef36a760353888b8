"""In a real browser: Debian's Chromium, driven by Playwright, against real clusters.

Each scenario has two browser contexts, two users with their own cookies.
Screenshots go to state/screenshots/ (or $SCREENSHOT_DIR).
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic has nowhere to go on this network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PASSWORD = "correct horse battery"
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "state" / "screenshots"))
# ms: deadlines for what the page does within a few seconds. They are polls,
# so a generous deadline costs nothing when the page is quick, and leaves
# room for a busy machine when it is not.
SOON = 20_000
# A heartbeat every PRESENCE_HEARTBEAT_INTERVAL (5 s), then the other page's poll.
PRESENCE_SOON = 5_000 + SOON


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def people(browser):
    """Open browser contexts (people) on demand; close them all afterwards."""
    contexts = []

    def open_person(**options):
        context = browser.new_context(viewport=options.pop("viewport", {"width": 1100, "height": 760}), **options)
        context.set_default_timeout(SOON)
        contexts.append(context)
        return context.new_page()

    yield open_person
    for context in contexts:
        context.close()


def shoot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png")


def sign_up_and_join(page, url, username, room="lobby"):
    page.goto(f"{url}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Join or open a room").fill(room)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}/rooms/{room}/")
    expect(page.locator("#login-state")).to_have_text(f"logged in as {username}")


def say(page, text):
    page.get_by_role("textbox", name="Message").fill(text)
    page.keyboard.press("Enter")
    expect(page.locator("#messages")).to_contain_text(text)


def served_by(page):
    return page.locator("#served-by").inner_text()


def chat_between_ada_and_bob(url, people):
    ada, bob = people(), people()
    sign_up_and_join(ada, url, "ada")
    sign_up_and_join(bob, url, "bob")
    say(ada, "hello bob")
    expect(bob.locator("#messages")).to_contain_text("hello bob")
    say(bob, "hi ada")
    expect(ada.locator("#messages")).to_contain_text("hi ada")
    expect(ada.locator("#online")).to_contain_text("bob", timeout=PRESENCE_SOON)
    expect(bob.locator("#online")).to_contain_text("ada", timeout=PRESENCE_SOON)
    return ada, bob


def test_two_people_chat_and_survive_a_kill_with_redis(cluster, people):
    c = cluster(instances=3, sessions="redis", presence="redis", lb="roundrobin")
    ada, bob = chat_between_ada_and_bob(c.url, people)
    expect(ada.locator("#served-by")).to_have_text(re.compile(r"^app\d$"))
    shoot(ada, "two-users-chatting")

    victim = served_by(ada)
    c.run("kill", victim)
    say(bob, "after the kill")
    expect(ada.locator("#messages")).to_contain_text("after the kill")
    say(ada, "still here")
    expect(bob.locator("#messages")).to_contain_text("still here")
    expect(ada.locator("#login-state")).to_have_text("logged in as ada")
    expect(ada.locator("#served-by")).not_to_have_text(victim)
    expect(ada.locator("#notice")).to_be_hidden()
    expect(ada.locator("#online")).to_contain_text("bob", timeout=PRESENCE_SOON)
    shoot(ada, "after-kill-redis")


def test_memory_sessions_behind_sticky_lose_the_login_visibly(cluster, people):
    c = cluster(instances=2, sessions="memory", presence="memory", lb="sticky")
    ada = people()
    sign_up_and_join(ada, c.url, "ada")
    say(ada, "before the kill")
    ada.get_by_role("textbox", name="Message").fill("a draft I have not sent")
    victim = served_by(ada)
    c.run("kill", victim)

    notice = ada.locator("#notice")
    expect(notice).to_contain_text("You are no longer logged in")
    expect(notice.get_by_role("link", name="Log in again")).to_have_attribute(
        "href", "/accounts/login/?next=/rooms/lobby/")
    expect(ada.locator("#login-state")).to_have_text("not logged in")
    expect(ada.get_by_role("textbox", name="Message")).to_have_value("a draft I have not sent")
    expect(notice).to_contain_text("unsent message is still in the box")
    shoot(ada, "after-kill-memory-sticky")

    notice.get_by_role("link", name="Log in again").click()
    expect(ada).to_have_url(re.compile(r"/accounts/login/"))


def test_logout_in_one_tab_stops_the_other(cluster, people):
    c = cluster(instances=2, sessions="redis", presence="redis")
    room = people()
    sign_up_and_join(room, c.url, "ada")
    other_tab = room.context.new_page()
    other_tab.goto(f"{c.url}/")
    other_tab.get_by_role("button", name="Log out ada").click()
    expect(other_tab).to_have_url(re.compile(r"/accounts/login/"))
    expect(room.locator("#notice")).to_contain_text("You are no longer logged in")


def test_the_page_says_when_the_site_is_unreachable_and_back(cluster, people):
    c = cluster(instances=1, sessions="redis", presence="redis")
    ada = people()
    sign_up_and_join(ada, c.url, "ada")
    c.run("kill", "app1")
    expect(ada.locator("#notice")).to_contain_text("unreachable")
    ada.get_by_role("textbox", name="Message").fill("typed while it was down")
    shoot(ada, "unreachable")
    c.run("start", "app1")
    expect(ada.locator("#notice")).to_contain_text("back")
    expect(ada.get_by_role("textbox", name="Message")).to_have_value("typed while it was down")
    ada.keyboard.press("Enter")
    expect(ada.locator("#messages")).to_contain_text("typed while it was down")


def test_reading_older_messages_is_not_interrupted(cluster, people):
    c = cluster(instances=1, sessions="redis", presence="redis")
    ada, bob = people(), people()
    sign_up_and_join(ada, c.url, "ada")
    sign_up_and_join(bob, c.url, "bob")
    for n in range(30):
        say(bob, f"line {n}")
    expect(ada.locator("#messages")).to_contain_text("line 29")
    messages = ada.locator("#messages")
    messages.evaluate("list => { list.scrollTop = 0; }")
    say(bob, "while ada reads")
    expect(ada.get_by_role("button", name="New messages below")).to_be_visible()
    assert messages.evaluate("list => list.scrollTop") == 0
    ada.get_by_role("button", name="New messages below").click()
    assert messages.evaluate("list => list.scrollHeight - list.scrollTop - list.clientHeight") < 40


def test_keyboard_only_on_a_narrow_screen(cluster, people):
    c = cluster(instances=1, sessions="redis", presence="redis")
    phone = people(viewport={"width": 375, "height": 740})
    phone.goto(f"{c.url}/accounts/signup/")
    # The page puts the keyboard in the first field by itself.
    expect(phone.get_by_label("Username")).to_be_focused()
    phone.keyboard.type("kim")
    for value in (PASSWORD, PASSWORD):
        phone.keyboard.press("Tab")
        phone.keyboard.type(value)
    phone.keyboard.press("Enter")
    expect(phone.locator("#login-state")).to_have_text("logged in as kim")
    phone.get_by_label("Join or open a room").focus()
    phone.keyboard.type("lobby")
    phone.keyboard.press("Enter")
    phone.get_by_role("textbox", name="Message").focus()
    phone.keyboard.type("typed on a phone")
    phone.keyboard.press("Enter")
    expect(phone.locator("#messages")).to_contain_text("typed on a phone")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(phone, "narrow-screen")
