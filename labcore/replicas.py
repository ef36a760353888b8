"""Synchronous replication of a Redis write: WAIT for replicas on the write's own connection.

Redis replicates asynchronously: a write is acknowledged once the primary
has it, and a primary that dies before its replicas copied the write loses
it, even though the user was told it succeeded. `WAIT k timeout` blocks
until k replicas confirm every earlier write of the same connection, so it
must follow the write on that connection (a pipeline), never on another one
from the pool, where it would confirm nothing. Fewer than k confirmations in
time is a failure the user sees (503 naming the store), never a silent
success: the write may still be on the primary, but nobody promised it.

A delete is a write like any other: a logout whose DEL a failover throws
away brings the session back, so it is confirmed the same way.

A shortfall is an answer from a healthy primary (its replicas are behind or
gone), not a failed store: it fails the one request, and leaves the store's
circuit breaker alone, so other requests go on reading (`replicated`).
"""

from contextlib import contextmanager

import redis

from labcore.stores import StoreUnavailable, store_errors


class NotReplicated(Exception):
    """Fewer replicas than asked confirmed a write in time."""


def confirmed_write(client, target, command, *args, **kwargs):
    """Run one write command; with target.sync, WAIT for that many replicas; return its result.

    NotReplicated if fewer confirm within target.sync_timeout, or if the
    primary refused the write because fewer are in step (NOREPLICAS, from
    min-replicas-to-write).
    """
    if not target.sync:
        return getattr(client, command)(*args, **kwargs)
    pipeline = client.pipeline(transaction=False)
    getattr(pipeline, command)(*args, **kwargs)
    pipeline.wait(target.sync, max(1, round(target.sync_timeout * 1000)))
    result, confirmed = pipeline.execute(raise_on_error=False)
    if isinstance(result, redis.ResponseError) and str(result).startswith("NOREPLICAS"):
        raise NotReplicated(f"0 of {target.sync} replicas confirmed the write: the primary refused it, "
                            f"having fewer than {target.sync} in step")
    for answer in (result, confirmed):
        if isinstance(answer, Exception):
            raise answer
    if confirmed < target.sync:
        raise NotReplicated(f"{confirmed} of {target.sync} replicas confirmed the write "
                            f"within {target.sync_timeout:g} s")
    return result


@contextmanager
def replicated(store, expected=(), part=None):
    """store_errors for confirmed writes: a shortfall is StoreUnavailable(store), outside the breaker."""
    try:
        with store_errors(store, expected=(*expected, NotReplicated), part=part):
            yield
    except NotReplicated as shortfall:
        raise StoreUnavailable(store, str(shortfall), public=str(shortfall)) from shortfall
