"""The floor, for the benchmark: the poll mix's store round trips with nothing of ours around them.

`GET /bench/floor/<poll|heartbeat|me>` sends the configured stores the
commands that request of the poll mix sends (pinned per store in
tests/test_roundtrips.py), through the same clients: the session cache
(django-redis, pymemcache or LocMem), the database connection, redis-py's
pooled client. It uses no session engine, breaker, presence script or
request.session, so a store's poll mix minus its floor is the cost of our
code, and the floor minus the bare ceiling (loadtest/bench/ceiling.py) the cost
of the store and its client. Send it without a session cookie: with one,
the idle-logout middleware loads the session as on any request.

It answers only with BENCH_VIEWS=1 (a 404 otherwise): it writes a fixed
key in the stores, which a site in use has no reason to carry.
"""

import datetime
import time

from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.http import Http404, JsonResponse
from django.utils import timezone

from chat import services
from labcore.stores import etcd_client, redis_client

# Not a session key's shape (labcore/sessions/keys.py), so no cookie can name what the floor stores.
KEY = "bench-floor"
# The size of a logged-in session (Django's auth keys and the activity clocks), with no login in it.
VALUE = {"floor": "0" * 218}
ROOM = "bench"


def _from_cache():
    sessions = caches[settings.SESSION_CACHE_ALIAS]
    if sessions.get(KEY) is None:
        sessions.set(KEY, VALUE, settings.SESSION_COOKIE_AGE)


def _from_database():
    # The query Django's db engine makes to load a session.
    rows = Session.objects.filter(session_key=KEY, expire_date__gt=timezone.now())
    if not rows.values_list("session_data", flat=True).first():
        Session.objects.update_or_create(session_key=KEY, defaults={
            "session_data": Session.objects.encode(VALUE),
            "expire_date": timezone.now() + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)})


def _from_file():
    path = f"{settings.SESSION_FILE_PATH}/{settings.SESSION_COOKIE_NAME}{KEY}"
    try:
        with open(path, "rb") as stored:
            stored.read()
    except FileNotFoundError:
        with open(path, "w") as stored:
            stored.write(Session.objects.encode(VALUE))


def _from_etcd():
    key = f"sessions/{KEY}"
    if not etcd_client().call(lambda etcd: etcd.get(key)):
        etcd_client().call(lambda etcd: etcd.put(key, Session.objects.encode(VALUE)))


def _from_cookie():
    """The signed cookie is the session: no store to ask."""


SESSION_READS = {"db": _from_database, "file": _from_file, "etcd": _from_etcd, "signed_cookies": _from_cookie}


def _read_session():
    SESSION_READS.get(settings.SESSION_STORE, _from_cache)()


def _heartbeat():
    """One round trip to shared presence (our script's place), none to the process's own."""
    if settings.PRESENCE_STORE == "redis":
        redis_client().zadd(f"benchfloor:{ROOM}", {"floor": time.time()})


def _poll():
    services.last_message_id(room_slug=ROOM)


REQUESTS = {"poll": (_read_session, _poll), "heartbeat": (_read_session, _heartbeat), "me": (_read_session,)}


def floor(request, name):
    if not settings.BENCH_VIEWS or name not in REQUESTS or request.method != "GET":
        raise Http404("no such page")
    for step in REQUESTS[name]:
        step()
    return JsonResponse({"floor": name, "instance": settings.INSTANCE_NAME})
