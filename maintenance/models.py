from django.db import models


class Fence(models.Model):
    """The highest fencing token the database has accepted for a lease, and whose it is.

    Every write a lease holder makes first raises `highest` to its token with
    a conditional UPDATE; a holder whose token is lower, or equal but
    another holder's, is refused.
    """

    name = models.CharField(max_length=50, primary_key=True)
    highest = models.BigIntegerField(default=0)
    # The lease owner that `highest` came from: a token is one acquisition's, never two holders'.
    holder = models.CharField(max_length=64, default="")


class Run(models.Model):
    """One period of maintenance, done once cluster-wide."""

    period_start = models.DateTimeField(unique=True)
    token = models.BigIntegerField()
    instance = models.CharField(max_length=100)
    sessions_cleared = models.IntegerField(default=0)
    finished_at = models.DateTimeField(auto_now_add=True)


class RefusedWrite(models.Model):
    """A write the fencing check turned away: the holder had lost the lease."""

    name = models.CharField(max_length=50)
    token = models.BigIntegerField()
    highest = models.BigIntegerField()
    instance = models.CharField(max_length=100)
    at = models.DateTimeField(auto_now_add=True)
