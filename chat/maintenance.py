"""Chat's part of the periodic maintenance: a per-room activity rollup, kept for a while."""

from django.db.models import Count

from chat.models import Message, Room, RoomActivity
from chat.presence import presence_store


def measure_rollup(begins, ends):
    """Each active room's messages in [begins, ends) and users online now: [(room, messages, online)].

    A room with no message in the period and nobody online is idle and left
    out: rollups grow with activity, not with the number of rooms.
    """
    counts = dict(
        Message.objects.filter(created_at__gte=begins, created_at__lt=ends)
        .values_list("room_id")
        .annotate(n=Count("id"))
    )
    store = presence_store()
    measured = ((room, counts.get(room.id, 0), len(store.online(room.slug))) for room in Room.objects.all())
    return [(room, messages, online) for room, messages, online in measured if messages or online]


def write_rollup(begins, rollup, *, token):
    """Write one RoomActivity row per room measured by measure_rollup."""
    RoomActivity.objects.bulk_create(
        RoomActivity(room=room, period_start=begins, messages=messages, online=online, token=token)
        for room, messages, online in rollup
    )


def delete_rollups_before(moment):
    """Delete the rollup rows of periods that began before moment; return how many."""
    deleted, _ = RoomActivity.objects.filter(period_start__lt=moment).delete()
    return deleted
