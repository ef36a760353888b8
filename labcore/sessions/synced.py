"""Django's async session methods, made to run the lab's synchronous ones.

Django gives every session engine a second, async copy of its storage
methods (aload, asave, ...), and its cache engines write theirs apart from
the sync ones: a failed cache read there is caught and read as an empty
session. The lab's engines override only the sync methods (store_errors,
SET XX/NX, WAIT), so anything that reads a session asynchronously, as a
WebSocket's handshake does (chat/consumers.py), would bypass them: a store
outage would become an anonymous connection, the silent logout these
engines exist to prevent. Every lab engine puts this mixin first, so the
async methods are the sync ones run in a thread, and fail as they do.
"""

from asgiref.sync import sync_to_async


class SyncedAsyncMethods:
    async def aload(self):
        return await sync_to_async(self.load)()

    async def aexists(self, session_key):
        return await sync_to_async(self.exists)(session_key)

    async def acreate(self):
        return await sync_to_async(self.create)()

    async def asave(self, must_create=False):
        return await sync_to_async(self.save)(must_create)

    async def adelete(self, session_key=None):
        return await sync_to_async(self.delete)(session_key)

    async def acycle_key(self):
        return await sync_to_async(self.cycle_key)()

    @classmethod
    async def aclear_expired(cls):
        return await sync_to_async(cls.clear_expired)()
