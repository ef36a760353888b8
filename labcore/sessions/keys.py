import re

# Django makes session keys of 32 lowercase letters and digits. Anything else
# in a cookie is not ours: treat it as no session, before any store sees it.
SESSION_KEY = re.compile(r"[a-z0-9]{32}")


def valid_session_key(key):
    return bool(key) and SESSION_KEY.fullmatch(key) is not None
