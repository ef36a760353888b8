"""The activity rollup grows with activity, not with rooms, and forgets what is past retention."""

import uuid
from datetime import UTC, datetime

from chat.models import Room, RoomActivity
from chat.presence import presence_store
from chat.services import post_message
from maintenance.jobs import run_period
from maintenance.models import Run

PERIOD = 3600


def run(start):
    run_period(start, PERIOD, token=1, holder="test", instance="test", still_holding=lambda: True,
               working=lambda _: None)


def rollups():
    return {(a.room.slug, int(a.period_start.timestamp())): (a.messages, a.online)
            for a in RoomActivity.objects.select_related("room")}


def test_idle_rooms_add_no_rows_and_rows_past_retention_are_deleted(redis_stores, user, settings):
    settings.ROLLUP_RETENTION = PERIOD
    message, _ = post_message(room_slug="talk", author=user, text="hi", client_id=uuid.uuid4())
    start = int(message.created_at.timestamp()) // PERIOD * PERIOD
    Room.objects.create(slug="busy")
    presence_store().heartbeat("busy", "ada")
    Room.objects.create(slug="idle")
    old_room = Room.objects.create(slug="old")
    past = datetime.fromtimestamp(start - 3 * PERIOD, UTC)
    RoomActivity.objects.create(room=old_room, period_start=past, messages=5, online=1, token=1)
    Run.objects.create(period_start=past, token=1, instance="test")

    run(start)
    assert rollups() == {("talk", start): (1, 0), ("busy", start): (0, 1)}
    assert not RoomActivity.objects.filter(period_start=past).exists()
    assert not Run.objects.filter(period_start=past).exists()

    # A period later, "busy" is still online and nothing was said: one row.
    # Another period later, the first period is more than a period old.
    run(start + PERIOD)
    run(start + 2 * PERIOD)
    assert set(rollups()) == {("busy", start + PERIOD), ("busy", start + 2 * PERIOD)}
    assert list(Run.objects.order_by("period_start").values_list("period_start", flat=True)) == [
        datetime.fromtimestamp(start + n * PERIOD, UTC) for n in (1, 2)]


def test_presence_is_asked_for_at_most_the_most_recently_active_rooms(redis_stores, user, settings):
    settings.ROLLUP_MAX_ROOMS = 2
    for slug in ("older", "newer"):
        message, _ = post_message(room_slug=slug, author=user, text="hi", client_id=uuid.uuid4())
    Room.objects.create(slug="quiet")
    for slug in ("older", "newer", "quiet"):
        presence_store().heartbeat(slug, "ada")
    start = int(message.created_at.timestamp()) // PERIOD * PERIOD

    run(start)
    assert rollups() == {("newer", start): (1, 1), ("older", start): (1, 1)}
