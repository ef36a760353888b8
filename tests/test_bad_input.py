"""Every bad input gets a 4xx with a JSON error that names the problem."""

import json
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

GOOD_ID = "6f1c1a52-1b1e-4d4c-9a0e-3f0f5f3e2a11"


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ("{not json", 400, "malformed JSON"),
        ("", 400, "empty"),
        ("[1, 2]", 400, "JSON object"),
        ('{"client_id": "%s"}' % GOOD_ID, 400, "'text'"),
        ('{"text": 5, "client_id": "%s"}' % GOOD_ID, 400, "'text'"),
        ('{"text": "   ", "client_id": "%s"}' % GOOD_ID, 400, "empty"),
        ('{"text": "%s", "client_id": "%s"}' % ("x" * 2001, GOOD_ID), 400, "2001 characters"),
        ('{"text": "hi"}', 400, "'client_id'"),
        ('{"text": "hi", "client_id": "not-a-uuid"}', 400, "not a UUID"),
        ('{"text": "hi", "client_id": 7}', 400, "'client_id'"),
        ("[" * 100_000, 400, "nested too deeply"),
        ('{"text": "hi", "client_id": %s}' % ("1" * 5000), 400, "malformed JSON"),
        ('{"text": "\\ud800", "client_id": "%s"}' % GOOD_ID, 400, "lone surrogate"),
        ('{"text": "nul\\u0000byte", "client_id": "%s"}' % GOOD_ID, 400, "NUL"),
    ],
)
def test_bad_message_posts(redis_stores, logged_in, body, status, named):
    response = logged_in.post("/api/rooms/lobby/messages", body, content_type="application/json")
    assert response.status_code == status
    assert named in response.json()["error"]


def test_a_body_that_is_not_json_is_refused_by_type(redis_stores, logged_in):
    multipart = "--xx\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n--xx--\r\n"
    response = logged_in.post(
        "/api/rooms/lobby/messages", multipart, content_type="multipart/form-data; boundary=xx"
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"username": "a\\u0000", "password": "x"}', "NUL"),
        ('{"username": "\\ud800", "password": "x"}', "lone surrogate"),
        ('{"username": "", "password": "x"}', "'username' is empty"),
    ],
)
def test_bad_token_requests_name_the_field(redis_stores, client, body, named):
    response = client.post("/api/token", body, content_type="application/json")
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_head_is_allowed_where_get_is(redis_stores, logged_in):
    assert logged_in.head("/api/me").status_code == 200


def test_text_of_exactly_the_limit_is_accepted(redis_stores, logged_in):
    response = logged_in.post(
        "/api/rooms/lobby/messages",
        {"text": "x" * 2000, "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert response.status_code == 201


@pytest.mark.parametrize("room", ["has space", "a" * 51, "dot.ted", "ünï"])
@pytest.mark.parametrize("endpoint", ["messages", "presence"])
def test_bad_room_names(redis_stores, logged_in, room, endpoint):
    response = logged_in.get(f"/api/rooms/{room}/{endpoint}")
    assert response.status_code == 400
    assert "room name" in response.json()["error"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("after=abc", "'after' must be an integer"),
        ("after=-1", "'after' must be between"),
        ("limit=0", "'limit' must be between"),
        ("limit=201", "'limit' must be between"),
        ("limit=1.5", "'limit' must be an integer"),
        ("limit=1_0", "'limit' must be an integer"),
        ("after=%D9%A3", "'after' must be an integer"),  # an Arabic-Indic three: int() takes it, we do not
    ],
)
def test_bad_cursors(redis_stores, logged_in, query, named):
    response = logged_in.get(f"/api/rooms/lobby/messages?{query}")
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_wrong_method_names_the_allowed_ones(redis_stores, logged_in):
    response = logged_in.put("/api/rooms/lobby/messages")
    assert response.status_code == 405
    assert "GET, HEAD, POST" in response.json()["error"]
    assert response["Allow"] == "GET, HEAD, POST"


def test_unknown_api_path_is_json_404(redis_stores, logged_in):
    response = logged_in.get("/api/nothing/here")
    assert response.status_code == 404
    assert "/api/nothing/here" in response.json()["error"]


def test_bad_room_name_on_the_rooms_page(redis_stores, logged_in):
    response = logged_in.get("/?name=bad name")
    assert response.status_code == 400
    assert "1 to 50 letters" in response.content.decode()


def test_good_room_name_on_the_rooms_page_opens_the_room(redis_stores, logged_in):
    response = logged_in.get("/?name=lobby")
    assert (response.status_code, response["Location"]) == (302, "/rooms/lobby/")


# Every API route that reads a JSON body, with a good body and the URL's
# arguments; presence's POST is a heartbeat and reads none.
GOOD_BODIES = {
    "api-token": ({}, {"username": "ada", "password": "correct horse battery"}),
    "api-session-counter": ({}, {"counter": 1, "room": "lobby"}),
    "api-messages": ({"room": "lobby"}, {"text": "hi", "client_id": GOOD_ID}),
}
NO_BODY = {"api-presence"}
# Python's json reads the first three though standard JSON has no such
# numbers; 1e400 overflows a float; a boolean or 1.9 is not an integer or a string.
NOT_STANDARD = ["NaN", "Infinity", "-Infinity", "1e400", "true", "1.9"]


def api_routes_with_bodies(patterns=None):
    """{route name: methods} for every API view that takes a POST, PUT or PATCH, from the URL conf."""
    found = {}
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found.update(api_routes_with_bodies(pattern.url_patterns))
        elif isinstance(pattern, URLPattern):
            methods = getattr(pattern.callback, "api_methods", frozenset())
            if methods & {"POST", "PUT", "PATCH"}:
                found[pattern.name] = methods
    return found


def test_the_sweep_knows_every_api_route_that_takes_a_body():
    assert set(api_routes_with_bodies()) == set(GOOD_BODIES) | NO_BODY


@pytest.mark.parametrize("value", NOT_STANDARD)
@pytest.mark.parametrize(
    ("route", "field"), [(route, field) for route, (_, body) in GOOD_BODIES.items() for field in body]
)
def test_every_field_refuses_what_is_not_standard_json_or_not_its_type(redis_stores, logged_in, route, field, value):
    kwargs, good = GOOD_BODIES[route]
    body = json.dumps({**good, field: "PLACE"}).replace('"PLACE"', value)
    response = logged_in.post(reverse(route, kwargs=kwargs), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert f"'{field}'" in response.json()["error"]


def test_the_good_bodies_are_good(redis_stores, logged_in):
    for route, (kwargs, good) in GOOD_BODIES.items():
        assert logged_in.post(reverse(route, kwargs=kwargs), good, content_type="application/json").status_code < 300


@pytest.mark.parametrize(
    ("body", "place"), [('{"counter": 1, "room": {"a": [1, NaN]}}', "'room.a[1]'"), ('{"counter": 1e400}', "'counter'")]
)
def test_a_number_json_has_not_is_named_by_its_place(redis_stores, logged_in, body, place):
    response = logged_in.post("/api/session-counter", body, content_type="application/json")
    assert response.status_code == 400
    assert place in response.json()["error"]


@pytest.mark.parametrize(("counter", "stored"), [("7", 7), (" -3 ", -3)])
def test_a_form_counter_is_read_as_digits(redis_stores, logged_in, counter, stored):
    assert logged_in.post("/api/session-counter", {"counter": counter}).json()["counter"] == stored
