"""Who is online in a room: soft state that expires unless refreshed.

PRESENCE_STORE chooses the store; each is one module with one class that
fills in the hooks of `base.PresenceStore`.
"""

import threading

from django.conf import settings
from django.utils.module_loading import import_string

_stores = {}
# gunicorn's threads may ask for the first time together; a memory store
# built twice would lose the heartbeats recorded in the first.
_lock = threading.Lock()


def presence_store():
    """Return this process's presence store, as configured."""
    key = (settings.PRESENCE_BACKEND, settings.PRESENCE_TTL)
    with _lock:
        if key not in _stores:
            _stores[key] = import_string(key[0])(ttl=key[1])
        return _stores[key]
