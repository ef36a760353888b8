"""Sessions in etcd: a majority store (Raft), through its JSON gateway.

A write is acknowledged once a majority of the members has it, and a read
is linearizable (served through the leader), so a session survives the
loss of any minority, the leader included, and nothing is served at all
without a majority. Each session is one key, attached to an etcd lease
that expires it: every save grants a new lease for the session's age and,
once the key holds it, revokes the one before, so a session keeps one
lease; etcd holds every lease in memory.

The key is not the session key but an HMAC of it (keys.private_name):
etcd lists a lease's keys to any client it takes, and keeps them in its
data files, so what it holds must be no login should either leak.
"""

import base64

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from etcd3gw.lease import Lease

from labcore.sessions.keys import create_with_a_new_key, private_name, valid_session_key
from labcore.sessions.synced import SyncedAsyncMethods
from labcore.stores import etcd_client, store_errors

PREFIX = "sessions/"
# A session that vanished between load and save is not a store failure.
SESSION_RACES = (CreateError, UpdateError)


def _b64(text):
    """The gateway's JSON carries keys and values in base 64."""
    return base64.b64encode(text.encode()).decode()


def _put_if(key, value, lease_id, *, exists):
    """A transaction: put key only if it exists already (exists=True) or not at all (False)."""
    compare = {"key": _b64(key), "target": "CREATE", "create_revision": 0,
               "result": "GREATER" if exists else "EQUAL"}
    put = {"key": _b64(key), "value": _b64(value), "lease": lease_id}
    return {"compare": [compare], "success": [{"request_put": put}], "failure": []}


class SessionStore(SyncedAsyncMethods, SessionBase):
    _lease = None  # the lease the key held when it was loaded

    def _validate_session_key(self, key):
        return valid_session_key(key)

    def _key(self, session_key=None):
        return PREFIX + private_name(session_key or self.session_key, "etcd")

    def load(self):
        if self.session_key is not None:
            with store_errors("etcd"):
                found = etcd_client().call(lambda etcd: etcd.get(self._key(), metadata=True))
            if found:
                value, metadata = found[0]
                self._lease = int(metadata.get("lease", 0)) or None
                return self.decode(value.decode())
        self._session_key = None
        return {}

    def exists(self, session_key):
        if not valid_session_key(session_key):
            return False  # None after a load that found nothing: no key, so no session (and no store to blame)
        with store_errors("etcd"):
            return bool(etcd_client().call(lambda etcd: etcd.get(self._key(session_key))))

    def create(self):
        create_with_a_new_key(self)

    def save(self, must_create=False):
        if self.session_key is None:
            return self.create()
        value = self.encode(self._get_session(no_load=must_create))  # first: the expiry would load it
        age = int(self.get_expiry_age())
        if age <= 0:
            # Django's engines store nothing for a session that expired
            # already; a lease of at least a second would keep it loadable.
            self.delete()
            self._lease = None
            return

        old = None if must_create else self._lease

        def put(etcd):
            lease = etcd.lease(ttl=age)
            txn = _put_if(self._key(), value, lease.id, exists=not must_create)
            if not etcd.transaction(txn).get("succeeded", False):
                lease.revoke()
                return None
            if old:
                Lease(old, client=etcd).revoke()
            return lease.id

        with store_errors("etcd", expected=SESSION_RACES):
            self._lease = etcd_client().call(put)
        if self._lease is None:
            raise CreateError if must_create else UpdateError

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        def delete(etcd):
            # Revoking its lease removes the key too; a key without one is deleted.
            found = etcd.get(self._key(session_key), metadata=True)
            lease = int(found[0][1].get("lease", 0)) if found else 0
            if lease:
                Lease(lease, client=etcd).revoke()
            else:
                etcd.delete(self._key(session_key))

        with store_errors("etcd"):
            etcd_client().call(delete)

    @classmethod
    def clear_expired(cls):
        """Nothing to do: each session's lease removes it when it expires."""

    def stored_bytes(self):
        """Bytes etcd keeps for this session's value."""
        with store_errors("etcd"):
            return len(etcd_client().call(lambda etcd: etcd.get(self._key()))[0])


def check():
    """For /readyz: a linearizable read, which needs a majority of the members."""
    with store_errors("etcd"):
        etcd_client().call(lambda etcd: etcd.get(PREFIX + "readyz"))
