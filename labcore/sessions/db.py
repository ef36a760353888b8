"""Sessions in the database: Django's engine, strict about session keys."""

from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.db import DatabaseError, InterfaceError, OperationalError

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
        if self.session_key is None or must_create:
            # Explicit: cached_db calls this save with its own self.
            return DBStore.save(self, must_create)
        # An update is one UPDATE of one row, atomic by itself: Django's
        # transaction around it only adds a BEGIN and a COMMIT (two round
        # trips on PostgreSQL). No row updated: the session was deleted
        # meanwhile (a logout), and is not written back. An update sends no
        # pre_save or post_save for the row, which nothing here listens to.
        row = self.create_model_instance(self._get_session())
        try:
            updated = self.model.objects.filter(session_key=row.session_key).update(
                session_data=row.session_data, expire_date=row.expire_date)
        except (OperationalError, InterfaceError) as cause:
            raise StoreUnavailable("database", str(cause)) from cause
        except DatabaseError as cause:
            raise UpdateError from cause
        if not updated:
            raise UpdateError

    def stored_bytes(self):
        """Bytes of the session's row data."""
        return len(self.model.objects.get(session_key=self.session_key).session_data)
