from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

ROOM_SLUG = RegexValidator(
    r"^[-a-zA-Z0-9_]{1,50}\Z", "a room name is 1 to 50 letters, digits, '-' or '_'"
)


class Room(models.Model):
    slug = models.CharField(max_length=50, unique=True, validators=[ROOM_SLUG])
    created_at = models.DateTimeField(auto_now_add=True)
    # Denormalised: the id of the room's newest message, written in the same
    # transaction as the message while that transaction holds the room's row
    # lock (chat/services.py). Every message of the room with an id at or
    # below a committed value is itself committed, so a poller may read it as
    # "nothing new below this". 0 while the room has no message.
    last_message_id = models.BigIntegerField(default=0)
    # Who created it, to limit the rooms a user may create per window
    # (chat/services.py). Null for rooms created before it was recorded.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+",
                                   on_delete=models.SET_NULL)

    class Meta:
        indexes = [models.Index(fields=["created_by", "created_at"])]

    def __str__(self):
        return self.slug


class Message(models.Model):
    """A chat message: hard state, kept until deleted."""

    MAX_LENGTH = 2000

    room = models.ForeignKey(Room, related_name="messages", on_delete=models.CASCADE)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    # Chosen by the client, so a retried post (by the client or by the load
    # balancer) finds the first copy instead of making a second one.
    client_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The id of the room's message before this one (null for the first),
    # fixed under the room's lock when it is stored (chat/services.py), so
    # a client that receives a message whose `prev` is not the last id it
    # holds knows it missed one, and resumes from there.
    prev = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["room", "id"])]

    def as_json(self):
        return {
            "id": self.id,
            "room": self.room.slug,
            "author": self.author.get_username(),
            "text": self.text,
            "client_id": str(self.client_id),
            "created_at": self.created_at.isoformat(),
            "prev": self.prev,
        }


class RoomActivity(models.Model):
    """A room's activity in one maintenance period, written by the lease holder.

    Only for rooms that had messages or someone online; deleted after
    ROLLUP_RETENTION (chat/maintenance.py).
    """

    room = models.ForeignKey(Room, related_name="activity", on_delete=models.CASCADE)
    period_start = models.DateTimeField()
    messages = models.IntegerField()
    # Online when the rollup ran, as this instance's presence store sees it.
    online = models.IntegerField()
    # The fencing token of the write, to tell which holder made it.
    token = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "period_start"], name="one_rollup_per_period")]
        # The retention deletes by period, across rooms.
        indexes = [models.Index(fields=["period_start"])]
