"""Sessions in the database: Django's engine, strict about session keys."""

from django.contrib.sessions.backends.db import SessionStore as DBStore

from labcore.sessions.keys import valid_session_key


class SessionStore(DBStore):
    def _validate_session_key(self, key):
        return valid_session_key(key)

    def stored_bytes(self):
        """Bytes of the session's row data."""
        return len(self.model.objects.get(session_key=self.session_key).session_data)
