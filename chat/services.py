"""Chat's reads and writes of hard state."""

from django.db import IntegrityError, transaction

from chat.models import Message, Room


class ClientIdConflict(Exception):
    """A client_id was reused for a different message."""


def post_message(*, room_slug, author, text, client_id):
    """Store a message once per client_id; return (message, created).

    A replay of the same post returns the stored message. Two concurrent
    replays race on the unique client_id, and the loser reads the winner's.
    """
    existing = _find(client_id)
    if existing is None:
        try:
            with transaction.atomic():
                room, _ = Room.objects.get_or_create(slug=room_slug)
                message = Message.objects.create(
                    room=room, author=author, text=text, client_id=client_id
                )
            return message, True
        except IntegrityError:
            existing = _find(client_id)
            if existing is None:
                raise
    if (existing.room.slug, existing.author_id, existing.text) != (room_slug, author.pk, text):
        raise ClientIdConflict(client_id)
    return existing, False


def _find(client_id):
    return Message.objects.select_related("room", "author").filter(client_id=client_id).first()


def messages_after(*, room_slug, after, limit):
    """Messages of a room with id > after, oldest first.

    With no cursor, the latest `limit` messages, still oldest first.
    """
    messages = Message.objects.select_related("room", "author").filter(room__slug=room_slug)
    if after is not None:
        return list(messages.filter(id__gt=after).order_by("id")[:limit])
    return list(reversed(messages.order_by("-id")[:limit]))


def room_list():
    return list(Room.objects.order_by("slug"))
