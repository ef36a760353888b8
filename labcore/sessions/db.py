"""Sessions in the database: Django's engine, strict about session keys."""

from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.db import InterfaceError, OperationalError

from labcore.sessions.keys import valid_session_key
from labcore.sessions.synced import SyncedAsyncMethods
from labcore.stores import StoreUnavailable


class SessionStore(SyncedAsyncMethods, DBStore):
    def _validate_session_key(self, key):
        return valid_session_key(key)

    def save(self, must_create=False):
        """Save; a database lost in the middle of an update is a 503 naming it.

        Django reads any DatabaseError while updating a session as the session
        having been deleted by another request (UpdateError, then a 400
        "session interrupted"). A connection that breaks, as at a PostgreSQL
        failover, is a failed store, not a deleted session (seen in the
        store-kill experiment: session writes answered 400 around a promotion).
        """
        try:
            DBStore.save(self, must_create)  # explicit: cached_db calls this save with its own self
        except UpdateError as error:
            cause = error.__context__
            if isinstance(cause, (OperationalError, InterfaceError)):
                raise StoreUnavailable("database", str(cause)) from cause
            raise

    def stored_bytes(self):
        """Bytes of the session's row data."""
        return len(self.model.objects.get(session_key=self.session_key).session_data)
