"""Chat's part of the periodic maintenance: a per-room activity rollup."""

from django.db.models import Count

from chat.models import Message, Room, RoomActivity
from chat.presence import presence_store


def write_rollup(begins, ends, *, token):
    """Write one RoomActivity row per room for the period [begins, ends)."""
    counts = dict(
        Message.objects.filter(created_at__gte=begins, created_at__lt=ends)
        .values_list("room_id")
        .annotate(n=Count("id"))
    )
    store = presence_store()
    RoomActivity.objects.bulk_create(
        RoomActivity(room=room, period_start=begins, messages=counts.get(room.id, 0),
                     online=len(store.online(room.slug)), token=token)
        for room in Room.objects.all()
    )
