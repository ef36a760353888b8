"""Sessions in files, one per session, in SESSION_FILE_PATH.

Django's file engine reads any OSError as "no session" and swallows failed
writes, so a missing or unreadable folder silently logs everyone out.
"""

import os

from django.conf import settings
from django.contrib.sessions.backends.file import SessionStore as FileStore

from labcore.sessions.keys import valid_session_key
from labcore.stores import StoreUnavailable


class SessionStore(FileStore):
    @classmethod
    def _get_storage_path(cls):
        # Django's engine caches the folder on the class at first use and
        # refuses to start without it; here a missing folder is a 503.
        return settings.SESSION_FILE_PATH

    def _validate_session_key(self, key):
        return valid_session_key(key)

    def _check_folder(self):
        if not os.path.isdir(self.storage_path):
            raise StoreUnavailable("file", f"the session folder {self.storage_path} is missing")

    def load(self):
        self._check_folder()
        if self.session_key is not None:
            try:
                with open(self._key_to_file(), "rb"):
                    pass
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreUnavailable("file", str(exc)) from exc
        return super().load()

    def save(self, must_create=False):
        self._check_folder()
        super().save(must_create)

    def stored_bytes(self):
        """Bytes of the session's file."""
        return os.path.getsize(self._key_to_file())
