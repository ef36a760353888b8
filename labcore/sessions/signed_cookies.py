"""Sessions in the client's cookie, signed with SECRET_KEY: Django's engine.

Nothing is kept on the server, so nothing is lost with an instance or a
store, and nothing can be revoked: a copy of the cookie works until it
expires.
"""

from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookieStore

from labcore.sessions.synced import SyncedAsyncMethods


class SessionStore(SyncedAsyncMethods, SignedCookieStore):
    def stored_bytes(self):
        """Bytes of the cookie, which is the whole session: the server keeps none."""
        return len(self.session_key)
