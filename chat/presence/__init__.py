"""Who is online in a room: soft state that expires unless refreshed.

PRESENCE_STORE chooses the store; each is one module with one class that
fills in the hooks of `base.PresenceStore`.
"""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string


@cache
def _store(backend, ttl):
    return import_string(backend)(ttl=ttl)


def presence_store():
    """Return this process's presence store, as configured."""
    return _store(settings.PRESENCE_BACKEND, settings.PRESENCE_TTL)
