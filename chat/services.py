"""Chat's reads and writes of hard state."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat.models import Message, Room


class ClientIdConflict(Exception):
    """A client_id was reused for a different message."""


class RoomLimitReached(Exception):
    """The author created as many rooms as a user may in the window."""

    def __init__(self, limit, window):
        self.limit, self.window = limit, window
        super().__init__(
            f"you created {limit} rooms in the last {window:g} s, the most a user may "
            f"(ROOM_CREATION_LIMIT per ROOM_CREATION_WINDOW); post in an existing room, or try again later")


class RoomsFull(Exception):
    """The site holds ROOM_LIMIT rooms: no new one until some are deleted."""

    def __init__(self, limit):
        self.limit = limit
        super().__init__(f"the site holds {limit} rooms, the most it may (ROOM_LIMIT); post in an existing room")


def post_message(*, room_slug, author, text, client_id):
    """Store a message once per client_id; return (message, created).

    A replay of the same post returns the stored message. Two concurrent
    replays race on the unique client_id, and the loser reads the winner's.

    Posts to one room are serialised on the room's row lock, held from
    before the message takes its id until the commit. So within a room ids
    commit in id order, and a poller whose cursor passed an id can never be
    shown a lower one later. Without the lock, PostgreSQL hands out ids at
    insert time while transactions commit in any order: a poll could return
    id 3 while id 2 was still uncommitted, move its cursor to 3 and never see
    2. (SQLite's immediate transactions already serialise every write.)
    The same lock fixes the message's `prev`, the id of the room's message
    before it, from the room's mark: the chain of `prev`s is the room's
    order, so a client can tell a gap in what it received.
    """
    existing = _find(client_id)
    if existing is None:
        try:
            with transaction.atomic():
                # NO KEY UPDATE: posts to the room wait for each other, while
                # rows that merely point at the room (a rollup) do not wait.
                room = Room.objects.select_for_update(no_key=True).filter(slug=room_slug).first()
                if room is None:
                    room = _create_room(room_slug, author)
                # The room's mark, read under its lock, is the message before this one.
                message = Message.objects.create(
                    room=room, author=author, text=text, client_id=client_id, prev=room.last_message_id or None
                )
                Room.objects.filter(pk=room.pk).update(last_message_id=message.id)
            return message, True
        except IntegrityError:
            existing = _find(client_id)
            if existing is None:
                raise
    if (existing.room.slug, existing.author_id, existing.text) != (room_slug, author.pk, text):
        raise ClientIdConflict(client_id)
    return existing, False


def _create_room(slug, author):
    """Create (or, if a post just did, lock) the room, within the author's limit of new rooms and the site's.

    The author's row lock makes the count and the insert one step, so
    parallel posts to new rooms cannot all pass the same count. NO KEY
    UPDATE: rows that merely point at the user (messages) do not wait.
    The site's cap (ROOM_LIMIT) is exact on SQLite, whose writes are
    serialised; on PostgreSQL parallel posts of different users to new
    rooms may pass it together, by at most the posts in flight.
    """
    get_user_model().objects.select_for_update(no_key=True).filter(pk=author.pk).first()
    since = timezone.now() - timedelta(seconds=settings.ROOM_CREATION_WINDOW)
    if Room.objects.filter(created_by=author, created_at__gte=since).count() >= settings.ROOM_CREATION_LIMIT:
        raise RoomLimitReached(settings.ROOM_CREATION_LIMIT, settings.ROOM_CREATION_WINDOW)
    if Room.objects.count() >= settings.ROOM_LIMIT and not Room.objects.filter(slug=slug).exists():
        raise RoomsFull(settings.ROOM_LIMIT)
    room, _ = Room.objects.select_for_update(no_key=True).get_or_create(slug=slug, defaults={"created_by": author})
    return room


def _find(client_id):
    return Message.objects.select_related("room", "author").filter(client_id=client_id).first()


def last_message_id(*, room_slug):
    """Return the room's high-water mark: every message at or below it is committed.

    One indexed read of one row, in SQL written once: building the ORM's
    query would cost more than running it. 0 for a room without messages
    or no room.
    """
    with connection.cursor() as cursor:
        cursor.execute(_LAST_MESSAGE_ID, [room_slug])
        row = cursor.fetchone()
    return row[0] if row else 0


_LAST_MESSAGE_ID = f"SELECT last_message_id FROM {Room._meta.db_table} WHERE slug = %s"


def messages_after(*, room_slug, after, limit):
    """Messages of a room with id > after, oldest first.

    With no cursor, the latest `limit` messages, still oldest first. One
    statement, so one snapshot; and since a room's ids commit in id order
    (post_message), what it sees is always a prefix of the room: a cursor
    taken from it never skips a message committed later.
    """
    messages = Message.objects.select_related("room", "author").filter(room__slug=room_slug)
    if after is not None:
        return list(messages.filter(id__gt=after).order_by("id")[:limit])
    return list(reversed(messages.order_by("-id")[:limit]))


def room_list():
    return list(Room.objects.order_by("slug"))
