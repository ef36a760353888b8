from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def backfill(apps, schema_editor):
    """Set each existing room's mark to the id of its newest message."""
    Room = apps.get_model("chat", "Room")
    Message = apps.get_model("chat", "Message")
    newest = Message.objects.filter(room=OuterRef("pk")).order_by("-id").values("id")[:1]
    Room.objects.update(last_message_id=Coalesce(Subquery(newest), Value(0)))


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0002_roomactivity"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="last_message_id",
            field=models.BigIntegerField(default=0),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
