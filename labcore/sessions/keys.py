import re

from django.contrib.sessions.backends.base import CreateError
from django.utils.crypto import salted_hmac

# Django makes session keys of 32 lowercase letters and digits. Anything else
# in a cookie is not ours: treat it as no session, before any store sees it.
SESSION_KEY = re.compile(r"[a-z0-9]{32}")


def valid_session_key(key):
    return bool(key) and SESSION_KEY.fullmatch(key) is not None


def private_name(session_key, store):
    """The name a store keeps a session under where others may list names: an HMAC of its key, in hex.

    A name that was the key itself would be a login for anyone who could
    list the names (a folder, etcd's lease listing). This one is a SHA-256
    HMAC with SECRET_KEY, salted per store: it finds the session from the
    key, and gives no key back.
    """
    return salted_hmac(f"labcore.sessions.{store}", session_key, algorithm="sha256").hexdigest()


def create_with_a_new_key(session):
    """Save session under a fresh key that no other session has: SessionBase.create for engines that raise.

    Django tries 10,000 keys because a cache that fails silently cannot tell
    a key collision from an outage. Our engines raise on an outage, so a few
    tries settle a collision.
    """
    for _ in range(10):
        session._session_key = session._get_new_session_key()
        try:
            session.save(must_create=True)
        except CreateError:
            continue
        session.modified = True
        return
    raise CreateError("ten random session keys in a row were taken")
