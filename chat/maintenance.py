"""Chat's part of the periodic maintenance: a per-room activity rollup, kept for a while."""

from django.conf import settings
from django.db.models import Count

from chat.models import Message, Room, RoomActivity
from chat.presence import presence_store


def measure_rollup(begins, ends):
    """Each active room's messages in [begins, ends) and users online now: [(room, messages, online)].

    A room with no message in the period and nobody online is idle and left
    out: rollups grow with activity, not with the number of rooms. Presence
    is asked for at most ROLLUP_MAX_ROOMS rooms per period, the most recently
    posted to first (then the newest), so the job's work is bounded however
    many rooms there are; a room past the cap gets no row that period.
    """
    counts = dict(
        Message.objects.filter(created_at__gte=begins, created_at__lt=ends)
        .values_list("room_id")
        .annotate(n=Count("id"))
    )
    store = presence_store()
    recent = Room.objects.order_by("-last_message_id", "-id")[:settings.ROLLUP_MAX_ROOMS]
    measured = ((room, counts.get(room.id, 0), len(store.online(room.slug))) for room in recent)
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
