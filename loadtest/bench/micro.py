"""Micro-benchmarks inside one process: the session layer per store, presence per room size,
and what posting a message costs per database.

Run through `python -m loadtest bench-sessions`, `bench-presence` and
`bench-posts`, which start the stores and call `main` in a fresh process per
configuration, with the site's settings taken from the environment as an
instance would. `main` prints one JSON line per measurement, the raw
reading only (loadtest/bench/readings.py says its fields); the figures are
computed from the run's history by the command, so a recheck gives the same.
"""

import json
import os
import sys
import time
import uuid

LOGGED_IN = {
    "_auth_user_id": "1",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "5f" * 32,
    "_last_seen": 1_800_000_000,
}
BATCHES = 9


def timed(call, repeat):
    """`call` run `repeat` times in 9 batches: {"calls": a batch's calls, "seconds": each batch's seconds}."""
    calls, seconds = max(1, repeat // BATCHES), []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        seconds.append(time.perf_counter() - started)
    return {"calls": calls, "seconds": seconds}


def session_readings(repeat):
    from django.conf import settings
    from django.utils.module_loading import import_module

    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    session = store_class()
    session.update(LOGGED_IN)
    session.save()
    key = session.session_key

    def load():
        store_class(key).load()

    def save():
        one = store_class(key)
        one["_last_seen"] = one["_last_seen"] + 1
        one.save()

    store = settings.SESSION_STORE
    return [{"store": store, "measure": "load", **timed(load, repeat)},
            {"store": store, "measure": "save", **timed(save, repeat)},
            {"store": store, "measure": "bytes", "bytes": store_class(key).stored_bytes()}]


def commandstats(call, repeat):
    """Redis's own INFO commandstats for the presence script after `repeat` calls: steadier than the round trip
    on a busy VM."""
    from labcore.stores import redis_client

    client = redis_client()
    client.config_resetstat()
    for _ in range(repeat):
        call()
    return client.info("commandstats")["cmdstat_evalsha"]


def presence_readings(sizes, repeat):
    """Per room size: a heartbeat, a poll (changes since a version) and the full list timed; in a store kept in
    Redis, Redis's own time for a heartbeat and a poll too."""
    from chat.presence import presence_store
    from labcore import registry

    store = presence_store()
    in_redis = "redis" in registry.PRESENCE_STORES[store.name].servers
    readings = []
    for size in sizes:
        room = f"bench{size}"
        for n in range(size):
            store.heartbeat(room, f"user{n}")
        version = store.heartbeat(room, "user0").version

        def heartbeat():
            store.heartbeat(room, "user1", version)

        def poll():
            store.view(room, version)

        def full():
            store.view(room)

        row = {"store": store.name, "online": size}
        readings += [{**row, "measure": "heartbeat", **timed(heartbeat, repeat)},
                     {**row, "measure": "poll", **timed(poll, repeat)},
                     {**row, "measure": "full_list", **timed(full, max(BATCHES, repeat // 20))}]
        if in_redis:
            readings += [{**row, "measure": "heartbeat_server", "commandstats": commandstats(heartbeat, repeat // 4)},
                         {**row, "measure": "poll_server", "commandstats": commandstats(poll, repeat // 4)}]
    return readings


def post_readings(repeat):
    """post_message's batches, and those of the same insert without the room lock and mark (before #13).

    The two alternate batch by batch in one process, so drift in a busy
    machine falls on both alike.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from chat.models import Message, Room
    from chat.services import post_message

    author = get_user_model().objects.create_user(f"bench{uuid.uuid4().hex[:8]}")

    def locked():
        post_message(room_slug="bench", author=author, text="hello", client_id=uuid.uuid4())

    def unlocked():
        # post_message's insert as it was before the room lock and the mark.
        if Message.objects.filter(client_id=(client_id := uuid.uuid4())).first() is None:
            with transaction.atomic():
                room, _ = Room.objects.get_or_create(slug="bench")
                Message.objects.create(room=room, author=author, text="hello", client_id=client_id)

    seconds = {"locked": [], "unlocked": []}
    calls = max(1, repeat // BATCHES)
    for call in (locked, unlocked):  # warm up: connections, the room, caches
        for _ in range(calls):
            call()
    for _ in range(BATCHES):
        for name, call in (("unlocked", unlocked), ("locked", locked)):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            seconds[name].append(time.perf_counter() - started)
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return [{"database": database, "measure": name, "calls": calls, "seconds": seconds[name]}
            for name in ("unlocked", "locked")]


def main():
    import django

    django.setup()
    what = sys.argv[1]
    repeat = int(os.environ.get("BENCH_REPEAT", "2000"))
    if what == "sessions":
        readings = session_readings(repeat)
    elif what == "posts":
        readings = post_readings(repeat)
    else:
        readings = presence_readings([int(n) for n in sys.argv[2].split(",")], repeat)
    for reading in readings:
        print(json.dumps(reading))


if __name__ == "__main__":
    main()
