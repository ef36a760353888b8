"""Bearer tokens: the "token on every request" kind of authentication.

A token is the user's id and a piece of their password hash, signed with
SECRET_KEY and stamped with its issue time. Any instance that shares the key
can check it without a session store; changing the password revokes it.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

SALT = "accounts.api-token"


def issue_token(user):
    return signing.dumps({"uid": user.pk, "pw": _password_mark(user)}, salt=SALT)


def user_for_token(token):
    """Return the token's user, or None if it is forged, expired or revoked."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=settings.API_TOKEN_MAX_AGE)
        user = get_user_model().objects.get(pk=claims["uid"], is_active=True)
    except (signing.BadSignature, KeyError, TypeError, get_user_model().DoesNotExist):
        return None
    if claims.get("pw") != _password_mark(user):
        return None
    return user


def _password_mark(user):
    return user.get_session_auth_hash()[:16]
