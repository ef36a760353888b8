from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    """Set each existing message's prev to the id of its room's message before it."""
    Message = apps.get_model("chat", "Message")
    before = Message.objects.filter(room=OuterRef("room"), id__lt=OuterRef("pk")).order_by("-id").values("id")[:1]
    Message.objects.update(prev=Subquery(before))


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0004_room_creator_rollup_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="prev",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
