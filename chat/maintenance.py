"""Chat's part of the periodic maintenance: a per-room activity rollup."""

from django.db.models import Count

from chat.models import Message, Room, RoomActivity
from chat.presence import presence_store


def measure_rollup(begins, ends):
    """Each room's messages in [begins, ends) and users online now: [(room, messages, online)]."""
    counts = dict(
        Message.objects.filter(created_at__gte=begins, created_at__lt=ends)
        .values_list("room_id")
        .annotate(n=Count("id"))
    )
    store = presence_store()
    return [(room, counts.get(room.id, 0), len(store.online(room.slug))) for room in Room.objects.all()]


def write_rollup(begins, rollup, *, token):
    """Write one RoomActivity row per room measured by measure_rollup."""
    RoomActivity.objects.bulk_create(
        RoomActivity(room=room, period_start=begins, messages=messages, online=online, token=token)
        for room, messages, online in rollup
    )
