"""Django's PostgreSQL backend, with every commit bounded by DATABASE_COMMIT_TIMEOUT.

A synchronous commit (`--pg-sync "ANY k"`) waits until k standbys have
flushed it, and with fewer than k standbys alive it waits forever:
statement_timeout does not cover that wait. Here a timer cancels a commit
still waiting after DATABASE_COMMIT_TIMEOUT seconds (psycopg's cancel, the
same request as Ctrl-C in psql). PostgreSQL then ends the wait, but the
transaction is already committed on the primary, so the COMMIT reports
success with only a WARNING, "canceling wait for synchronous replication".
A notice handler catches that warning and the commit becomes
StoreUnavailable("database"), a 503: the write is there, but nobody may
promise it survives the primary, so the user is not told it succeeded. A
retry of an idempotent write (a message with the same client_id) finds it
and answers with it.

Commits are COMMIT in a transaction and, in autocommit mode, every
statement that writes (in autocommit a read commits nothing, so never
waits). 0 turns the bound off and costs nothing; deploy sets it whenever
a cluster has synchronous standbys.
"""

import threading

from django.conf import settings
from django.db.backends.postgresql import base

from labcore.stores import StoreUnavailable

CANCELLED_SYNC_WAIT = "canceling wait for synchronous replication"
WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_wait_cancelled = False
        self.execute_wrappers.append(self._bound_autocommit_write)

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.add_notice_handler(self._notice)
        return connection

    def _notice(self, diagnostic):
        if (diagnostic.message_primary or "").startswith(CANCELLED_SYNC_WAIT):
            self.sync_wait_cancelled = True

    def _commit(self):
        with self._bounded("COMMIT"):
            return super()._commit()

    def _bound_autocommit_write(self, execute, sql, params, many, context):
        if not self.get_autocommit() or not sql.lstrip()[:6].upper().startswith(WRITES):
            return execute(sql, params, many, context)
        with self._bounded(sql.split(None, 1)[0].upper()):
            return execute(sql, params, many, context)

    def _bounded(self, what):
        return _Bound(self, what, getattr(settings, "DATABASE_COMMIT_TIMEOUT", 0))


class _Bound:
    """Cancel the connection's statement unless the block ends within `seconds`."""

    def __init__(self, wrapper, what, seconds):
        self.wrapper, self.what, self.seconds = wrapper, what, seconds
        self.lock = threading.Lock()
        self.done = False
        self.timer = None

    def __enter__(self):
        self.wrapper.sync_wait_cancelled = False
        if self.seconds > 0 and self.wrapper.connection is not None:
            self.timer = threading.Timer(self.seconds, self._cancel, args=(self.wrapper.connection,))
            self.timer.daemon = True
            self.timer.start()
        return self

    def _cancel(self, connection):
        # Under the lock, and only while the block runs: a cancel must never
        # reach the connection's next statement.
        with self.lock:
            if not self.done:
                connection.cancel_safe(timeout=self.seconds)

    def __exit__(self, *exc):
        if self.timer:
            self.timer.cancel()
        with self.lock:
            self.done = True
        if self.wrapper.sync_wait_cancelled and exc[0] is None:
            self.wrapper.sync_wait_cancelled = False
            raise StoreUnavailable("database", f"{self.what} was not confirmed by enough synchronous standbys "
                                               f"within {self.seconds:g} s; it is on the primary only")
        return False
