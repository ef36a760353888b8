"""Fencing: the database refuses writes made with an outdated lease token.

A lease in Redis says who may act, but a holder that was paused (a long GC,
a SIGSTOP, a partition) can wake up still believing it holds the lease. So
every write carries the token of its acquisition and the holder's identity
(the lease's owner), and the database keeps the highest token it has seen
with the holder it came from: a write passes if its token is higher, or
equal and from that same holder. Equal tokens from two holders happen when
the lease store loses its counter (an asynchronous failover, a restart
without persistence) before the first holder raised the fence; the second
holder is refused. The check and the raise are one conditional UPDATE in
the write's own transaction, never a read followed by a write.
"""

from contextlib import contextmanager

from django.db import transaction
from django.db.models import Q

from maintenance.models import Fence, RefusedWrite


class StaleToken(Exception):
    def __init__(self, name, token, highest):
        self.name, self.token, self.highest = name, token, highest
        super().__init__(f"lease {name!r}: token {token} is not newer than {highest} from its holder; write refused")


@contextmanager
def fenced(name, token, *, holder, instance):
    """Run the block in a transaction that commits only if token is still the newest, and holder's.

    Raise StaleToken, after recording the refusal, if a newer token was
    seen, or this token from another holder.
    """
    Fence.objects.get_or_create(name=name)
    try:
        with transaction.atomic():
            newest = Q(highest__lt=token) | Q(highest=token, holder=holder)
            accepted = Fence.objects.filter(newest, name=name).update(highest=token, holder=holder)
            if not accepted:
                raise StaleToken(name, token, Fence.objects.values_list("highest", flat=True).get(name=name))
            yield
    except StaleToken as refused:
        RefusedWrite.objects.create(name=name, token=token, highest=refused.highest, instance=instance)
        raise


def highest_token(name):
    return Fence.objects.filter(name=name).values_list("highest", flat=True).first() or 0
