"""Sessions in files, one per session, in SESSION_FILE_PATH.

Django's file engine reads any OSError as "no session" and swallows failed
writes and deletes: a missing or unreadable folder silently logs everyone
out, a failed write leaves an empty file (a silent logout), and a failed
delete is a logout that revokes nothing. Here each is a 503 naming the store.

A file is not named by its session key, as Django's are: anyone who could
list the folder would hold every login. Its name is an HMAC of the key with
SECRET_KEY (keys.private_name), and it is 0600 in a 0700 folder.
"""

import datetime
import os
import re
import tempfile

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.file import SessionStore as FileStore

from labcore.sessions.keys import private_name, valid_session_key
from labcore.sessions.synced import SyncedAsyncMethods
from labcore.stores import StoreUnavailable

FILE_NAME = re.compile(r"[0-9a-f]{64}")  # after SESSION_COOKIE_NAME: a SHA-256 HMAC in hex


def _failed(exc):
    return StoreUnavailable("file", f"{type(exc).__name__}: {exc}")


class SessionStore(SyncedAsyncMethods, FileStore):
    @classmethod
    def _get_storage_path(cls):
        # Django's engine caches the folder on the class at first use and
        # refuses to start without it; here a missing folder is a 503.
        return settings.SESSION_FILE_PATH

    def _validate_session_key(self, key):
        return valid_session_key(key)

    def _key_to_file(self, session_key=None):
        if session_key is None:
            session_key = self._get_or_create_session_key()
        return os.path.join(self.storage_path, self.file_prefix + private_name(session_key, "file"))

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
                raise _failed(exc) from exc
        return super().load()

    def save(self, must_create=False):
        """Write the session to a temporary file and rename it over the old one; raise if any step fails."""
        self._check_folder()
        if self.session_key is None:
            return self.create()
        data = self.encode(self._get_session(no_load=must_create)).encode()
        path = self._key_to_file()
        if must_create:
            # Claim the name; a key already taken is a collision, not a failure.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                raise CreateError from None
            except OSError as exc:
                raise _failed(exc) from exc
        elif not os.path.exists(path):
            raise UpdateError
        try:
            self._write(path, data)
        except OSError as exc:
            if must_create:
                # An empty claimed file would read as an empty session: a silent logout.
                self._remove(path)
            raise _failed(exc) from exc

    def _write(self, path, data):
        # The new contents appear at once or not at all: readers never see half a session.
        descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            self._remove(temporary)
            raise

    @staticmethod
    def _remove(path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        try:
            os.unlink(self._key_to_file(session_key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _failed(exc) from exc

    @classmethod
    def clear_expired(cls):
        """Remove the files of expired sessions; return how many.

        Django's version recovers each key from its file's name, which names
        no key here, so this one reads each file's expiry instead.
        """
        folder = cls._get_storage_path()
        prefix = settings.SESSION_COOKIE_NAME
        reader = cls()
        removed = 0
        for name in os.listdir(folder):
            if not (name.startswith(prefix) and FILE_NAME.fullmatch(name.removeprefix(prefix))):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="ascii") as session_file:
                    text = session_file.read()
                modified = os.stat(path).st_mtime
            except FileNotFoundError:
                continue  # removed meanwhile by a logout
            data = reader.decode(text) if text else {}
            modified = datetime.datetime.fromtimestamp(modified, tz=datetime.UTC)
            expiry = data.get("_session_expiry") or reader.get_session_cookie_age()
            if isinstance(expiry, int):  # seconds after the last write
                expiry = modified + datetime.timedelta(seconds=expiry)
            if reader.get_expiry_age(expiry=expiry) <= 0:
                cls._remove(path)
                removed += 1
        return removed

    def stored_bytes(self):
        """Bytes of the session's file."""
        return os.path.getsize(self._key_to_file())


def clear_expired():
    """For the maintenance job: remove expired session files; return how many."""
    return SessionStore.clear_expired()
