"""Chat's JSON API: messages (hard state) and presence (soft state)."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse

from chat import services
from chat.models import ROOM_SLUG, Message
from chat.presence import presence_store
from chat.presence.base import parse_version
from labcore.api import ApiError, api_view, read_json, require_int, require_text

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _room(slug):
    try:
        ROOM_SLUG(slug)
    except ValidationError:
        raise ApiError(400, f"bad room name {slug[:60]!r}: {ROOM_SLUG.message}") from None
    return slug


def _int_param(request, name, default, low, high):
    if name not in request.GET:
        return default
    value = require_int(request.GET, name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low} and {high}, not {value}")
    return value


def message_input(data):
    """The text and client_id of a post (HTTP or WebSocket), or ApiError(400) naming what is wrong."""
    text = require_text(data, "text")
    client_id = require_text(data, "client_id", required_because=": a UUID the client chooses for this message")
    if not text.strip():
        raise ApiError(400, "'text' is empty")
    if len(text) > Message.MAX_LENGTH:
        raise ApiError(400, f"'text' is {len(text)} characters; the limit is {Message.MAX_LENGTH}")
    try:
        client_id = uuid.UUID(client_id)
    except ValueError:
        raise ApiError(400, f"'client_id' is not a UUID: {client_id[:60]!r}") from None
    return text, client_id


@api_view("GET", "POST")
def messages(request, room):
    room = _room(room)
    if request.method == "POST":
        return _post_message(request, room)
    after = _int_param(request, "after", None, 0, 2**63 - 1)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if after is not None and services.last_message_id(room_slug=room) <= after:
        # Nothing new: the room's safe mark says no committed message lies past the cursor.
        return JsonResponse({"room": room, "messages": [], "cursor": after})
    found = services.messages_after(room_slug=room, after=after, limit=limit)
    return JsonResponse(
        {
            "room": room,
            "messages": [m.as_json() for m in found],
            "cursor": found[-1].id if found else after,
        }
    )


def _post_message(request, room):
    text, client_id = message_input(read_json(request))
    message, created = post(room=room, author=request.user, text=text, client_id=client_id)
    return JsonResponse(message.as_json(), status=201 if created else 200)


def post(*, room, author, text, client_id):
    """services.post_message, its refusals as ApiError: for the HTTP post and the WebSocket's alike."""
    try:
        return services.post_message(room_slug=room, author=author, text=text, client_id=client_id)
    except services.ClientIdConflict:
        raise ApiError(409, f"client_id {client_id} was already used for a different message") from None
    except services.RoomLimitReached as limit:
        raise ApiError(429, str(limit)) from None
    except services.RoomsFull as full:
        raise ApiError(403, str(full)) from None


@api_view("GET", "POST", "DELETE")
def presence(request, room):
    """GET reads who is online; POST is a heartbeat; DELETE leaves the room.

    With `?since=<version>` the answer holds only the changes after that
    version, so a poll stays cheap however large the room; without it, or
    when the client is too far behind, the full list.
    """
    room = _room(room)
    since = request.GET.get("since")
    if since is not None and parse_version(since) is None:
        raise ApiError(400, f"'since' must be a version from an earlier answer, like 'a1b2.42', not {since[:40]!r}")
    store = presence_store()
    username = request.user.get_username()
    if request.method == "POST":
        view = store.heartbeat(room, username, since)
    else:
        if request.method == "DELETE":
            store.leave(room, username)
        view = store.view(room, since)
    return JsonResponse(
        {
            "room": room,
            **view.as_json(),
            "ttl": store.ttl,
            "heartbeat_interval": settings.PRESENCE_HEARTBEAT_INTERVAL,
            "store": store.name,
            "instance": settings.INSTANCE_NAME,
        }
    )
