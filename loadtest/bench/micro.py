"""Micro-benchmarks inside one process: the session layer per store, presence per room size,
and what posting a message costs per database.

Run through `python -m loadtest bench-sessions`, `bench-presence` and
`bench-posts`, which start the stores and call `main` in a fresh process per
configuration, with the site's settings taken from the environment as an
instance would.
"""

import json
import os
import statistics
import sys
import time
import uuid

LOGGED_IN = {
    "_auth_user_id": "1",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "5f" * 32,
    "_last_seen": 1_800_000_000,
}


def timed(call, repeat):
    """Median µs of `call` over `repeat` runs, in 9 batches (the median batch)."""
    batches = []
    per_batch = max(1, repeat // 9)
    for _ in range(9):
        started = time.perf_counter()
        for _ in range(per_batch):
            call()
        batches.append((time.perf_counter() - started) / per_batch * 1e6)
    return round(statistics.median(batches), 1)


def session_figures(repeat):
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

    return {
        "store": settings.SESSION_STORE,
        "load_us": timed(load, repeat),
        "save_us": timed(save, repeat),
        "bytes": store_class(key).stored_bytes(),
    }


def server_us(store, call, repeat):
    """µs Redis itself spent per call: steadier than the round trip on a busy VM."""
    from labcore import registry
    from labcore.stores import redis_client

    if "redis" not in registry.PRESENCE_STORES[store.name].servers:
        return None

    client = redis_client()
    client.config_resetstat()
    for _ in range(repeat):
        call()
    return round(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"], 1)


def presence_figures(sizes, repeat):
    from chat.presence import presence_store

    store = presence_store()
    figures = []
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

        figures.append({
            "store": store.name, "online": size,
            "heartbeat_us": timed(heartbeat, repeat), "poll_us": timed(poll, repeat),
            "full_list_us": timed(full, max(9, repeat // 20)),
            "heartbeat_server_us": server_us(store, heartbeat, repeat // 4),
            "poll_server_us": server_us(store, poll, repeat // 4),
        })
    return figures


def post_figures(repeat):
    """µs per post_message, and per the same insert without the room lock and mark (before #13).

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

    batches = {"locked": [], "unlocked": []}
    per_batch = max(1, repeat // 9)
    for call in (locked, unlocked):  # warm up: connections, the room, caches
        for _ in range(per_batch):
            call()
    for _ in range(9):
        for name, call in (("unlocked", unlocked), ("locked", locked)):
            started = time.perf_counter()
            for _ in range(per_batch):
                call()
            batches[name].append((time.perf_counter() - started) / per_batch * 1e6)
    before, after = (round(statistics.median(batches[name]), 1) for name in ("unlocked", "locked"))
    return {"database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "before_us": before, "after_us": after, "added_us": round(after - before, 1),
            "ratio": round(after / before, 2), "posts_per_batch": per_batch}


def main():
    import django

    django.setup()
    what = sys.argv[1]
    repeat = int(os.environ.get("BENCH_REPEAT", "2000"))
    if what == "sessions":
        print(json.dumps(session_figures(repeat)))
    elif what == "posts":
        print(json.dumps(post_figures(repeat)))
    else:
        print(json.dumps(presence_figures([int(n) for n in sys.argv[2].split(",")], repeat)))


if __name__ == "__main__":
    main()
