"""Messages: hard state, stored once per client_id, read with a client-held cursor."""

import uuid
from datetime import timedelta

from django.utils import timezone

from chat.models import Message, Room
from chat.services import last_message_id


def post(client, room, text, client_id=None):
    return client.post(
        f"/api/rooms/{room}/messages",
        {"text": text, "client_id": str(client_id or uuid.uuid4())},
        content_type="application/json",
    )


def test_post_stores_the_message(redis_stores, logged_in):
    client_id = uuid.uuid4()
    response = post(logged_in, "lobby", "hello", client_id)
    assert response.status_code == 201
    body = response.json()
    assert (body["room"], body["author"], body["text"]) == ("lobby", "ada", "hello")
    assert body["client_id"] == str(client_id)
    assert Message.objects.get(client_id=client_id).text == "hello"


def test_replay_returns_the_same_message_and_stores_one(redis_stores, logged_in):
    client_id = uuid.uuid4()
    first = post(logged_in, "lobby", "only once", client_id)
    replay = post(logged_in, "lobby", "only once", client_id)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    assert Message.objects.filter(client_id=client_id).count() == 1


def test_reusing_a_client_id_for_other_text_is_a_conflict(redis_stores, logged_in):
    client_id = uuid.uuid4()
    post(logged_in, "lobby", "first", client_id)
    response = post(logged_in, "lobby", "second", client_id)
    assert response.status_code == 409
    assert str(client_id) in response.json()["error"]
    assert Message.objects.get(client_id=client_id).text == "first"


def test_text_is_stored_exactly_as_sent(redis_stores, logged_in):
    text = '<script>alert("x")</script> & ünïcode\n  spaced  '
    post(logged_in, "lobby", text)
    assert logged_in.get("/api/rooms/lobby/messages").json()["messages"][0]["text"] == text


def test_cursor_pages_forward_in_id_order(redis_stores, logged_in):
    for i in range(5):
        post(logged_in, "lobby", f"m{i}")
    post(logged_in, "other", "elsewhere")

    first = logged_in.get("/api/rooms/lobby/messages?after=0&limit=2").json()
    assert [m["text"] for m in first["messages"]] == ["m0", "m1"]
    rest = logged_in.get(f"/api/rooms/lobby/messages?after={first['cursor']}&limit=10").json()
    assert [m["text"] for m in rest["messages"]] == ["m2", "m3", "m4"]
    ids = [m["id"] for m in first["messages"] + rest["messages"]]
    assert ids == sorted(ids)
    empty = logged_in.get(f"/api/rooms/lobby/messages?after={rest['cursor']}").json()
    assert empty == {"room": "lobby", "messages": [], "cursor": rest["cursor"]}


def test_without_a_cursor_the_latest_come_oldest_first(redis_stores, logged_in):
    for i in range(5):
        post(logged_in, "lobby", f"m{i}")
    latest = logged_in.get("/api/rooms/lobby/messages?limit=3").json()
    assert [m["text"] for m in latest["messages"]] == ["m2", "m3", "m4"]



def test_the_room_mark_is_its_newest_message_id(redis_stores, logged_in):
    assert last_message_id(room_slug="lobby") == 0
    ids = [post(logged_in, "lobby", f"m{i}").json()["id"] for i in range(3)]
    post(logged_in, "other", "elsewhere")
    assert post(logged_in, "lobby", "m0", client_id=Message.objects.get(text="m0").client_id).status_code == 200
    assert last_message_id(room_slug="lobby") == ids[-1]


def test_a_poll_that_finds_nothing_new_costs_one_query(redis_stores, logged_in, django_assert_num_queries):
    for n in range(3):
        post(logged_in, "lobby", f"m{n}")
    cursor = logged_in.get("/api/rooms/lobby/messages").json()["cursor"]
    logged_in.get("/api/me")  # the session's user is now cached in this process
    with django_assert_num_queries(1):  # the room's mark: no user lookup, no message query
        empty = logged_in.get(f"/api/rooms/lobby/messages?after={cursor}")
    assert empty.json() == {"room": "lobby", "messages": [], "cursor": cursor}
    post(logged_in, "lobby", "news")
    assert [m["text"] for m in logged_in.get(f"/api/rooms/lobby/messages?after={cursor}").json()["messages"]] == [
        "news"]


def test_a_new_password_takes_effect_at_once_despite_the_user_cache(redis_stores, logged_in, user):
    assert logged_in.get("/api/me").status_code == 200
    user.set_password("a new one entirely")
    user.save()
    assert logged_in.get("/api/me").status_code == 401


def test_a_user_gets_a_429_past_the_rooms_they_may_create(redis_stores, logged_in, client_factory, settings):
    settings.ROOM_CREATION_LIMIT = 2
    assert [post(logged_in, room, "hi").status_code for room in ("one", "two")] == [201, 201]
    refused = post(logged_in, "three", "hi")
    assert refused.status_code == 429
    assert "ROOM_CREATION_LIMIT" in refused.json()["error"] and "2 rooms" in refused.json()["error"]
    assert not Room.objects.filter(slug="three").exists()
    # Posting where rooms exist is not creating one; another user has a limit of their own.
    assert post(logged_in, "one", "again").status_code == 201
    assert post(client_factory("bob"), "three", "hi").status_code == 201
    assert post(logged_in, "three", "now it exists").status_code == 201
    # Rooms created before the window do not count.
    Room.objects.filter(slug="one").update(
        created_at=timezone.now() - timedelta(seconds=settings.ROOM_CREATION_WINDOW + 1))
    assert post(logged_in, "four", "hi").status_code == 201


def test_the_site_refuses_rooms_past_its_cap_whoever_asks(redis_stores, logged_in, client_factory, settings):
    settings.ROOM_LIMIT = 2
    assert [post(client_factory(name), room, "hi").status_code
            for name, room in (("ann", "one"), ("bob", "two"))] == [201, 201]
    refused = post(logged_in, "three", "hi")
    assert refused.status_code == 403
    assert "ROOM_LIMIT" in refused.json()["error"] and "2 rooms" in refused.json()["error"]
    assert not Room.objects.filter(slug="three").exists()
    # Rooms that exist still take posts.
    assert post(logged_in, "one", "again").status_code == 201
