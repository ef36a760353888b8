"""Synchronous replication of a Redis write: WAIT for replicas on the write's own connection.

Redis replicates asynchronously: a write is acknowledged once the primary
has it, and a primary that dies before its replicas copied the write loses
it, even though the user was told it succeeded. `WAIT k timeout` blocks
until k replicas confirm every earlier write of the same connection, so it
must follow the write on that connection (a pipeline), never on another one
from the pool, where it would confirm nothing. Fewer than k confirmations in
time is a failure the user sees (503 naming the store), never a silent
success: the write may still be on the primary, but nobody promised it.
"""


class NotReplicated(Exception):
    """Fewer replicas than asked confirmed a write in time."""


def confirmed_write(client, target, command, *args, **kwargs):
    """Run one write command; with target.sync, WAIT for that many replicas; return its result."""
    if not target.sync:
        return getattr(client, command)(*args, **kwargs)
    pipeline = client.pipeline(transaction=False)
    getattr(pipeline, command)(*args, **kwargs)
    pipeline.wait(target.sync, max(1, round(target.sync_timeout * 1000)))
    result, confirmed = pipeline.execute()
    if confirmed < target.sync:
        raise NotReplicated(f"{confirmed} of {target.sync} replicas confirmed the write "
                            f"within {target.sync_timeout:g} s")
    return result
