"""Login throttling against password guessing.

Failed logins are counted per username in the "shared" cache: Redis or
memcached when the configuration has one, so the limit holds across
instances; a per-process LocMem otherwise, where each instance counts alone.
"""

import hashlib

from django.conf import settings
from django.contrib.auth.forms import UsernameField
from django.core.cache import caches

from labcore.stores import store_errors


def _key(username):
    """The counter's key: the username as the login form reads it, hashed.

    The form strips spaces and NFKC-normalises, so "ada " is "ada"; the hash
    keeps keys short and legal in every cache, whatever was typed.
    """
    canonical = (UsernameField().to_python(username) or "").lower()
    return "login-failures:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def is_locked_out(username):
    with store_errors(settings.SHARED_STORE):
        failures = caches["shared"].get(_key(username), 0)
    return failures >= settings.LOGIN_MAX_FAILURES


def record_failure(username):
    cache = caches["shared"]
    with store_errors(settings.SHARED_STORE):
        # add() starts the window; incr() is atomic in every cache we use.
        if cache.add(_key(username), 1, settings.LOGIN_FAILURE_WINDOW):
            return
        try:
            cache.incr(_key(username))
        except ValueError:
            # The window ran out between add() and incr(): start a new one.
            cache.add(_key(username), 1, settings.LOGIN_FAILURE_WINDOW)


def clear_failures(username):
    with store_errors(settings.SHARED_STORE):
        caches["shared"].delete(_key(username))
