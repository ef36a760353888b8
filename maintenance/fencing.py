"""Fencing: the database refuses writes made with an outdated lease token.

A lease in Redis says who may act, but a holder that was paused (a long GC,
a SIGSTOP, a partition) can wake up still believing it holds the lease. So
every write carries the token of its acquisition, and the database keeps the
highest token it has seen: the check and the raise are one conditional
UPDATE in the write's own transaction, never a read followed by a write.
"""

from contextlib import contextmanager

from django.db import transaction

from maintenance.models import Fence, RefusedWrite


class StaleToken(Exception):
    def __init__(self, name, token, highest):
        self.name, self.token, self.highest = name, token, highest
        super().__init__(f"lease {name!r}: token {token} is older than {highest}; write refused")


@contextmanager
def fenced(name, token, *, instance):
    """Run the block in a transaction that commits only if token is still the newest.

    Raise StaleToken, after recording the refusal, if a newer token was seen.
    """
    Fence.objects.get_or_create(name=name)
    try:
        with transaction.atomic():
            accepted = Fence.objects.filter(name=name, highest__lte=token).update(highest=token)
            if not accepted:
                raise StaleToken(name, token, Fence.objects.values_list("highest", flat=True).get(name=name))
            yield
    except StaleToken as refused:
        RefusedWrite.objects.create(name=name, token=token, highest=refused.highest, instance=instance)
        raise


def highest_token(name):
    return Fence.objects.filter(name=name).values_list("highest", flat=True).first() or 0

