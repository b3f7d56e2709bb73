"""The reasoning part of an event's output tokens, where the provider reports it.

On SQLite, adding a NOT NULL column rebuilds usage_usageevent, which drops the trigger that
queues new events for the roll-up (see 0002): it is created again here. PostgreSQL adds the
column in place and keeps the trigger.
"""

from django.db import migrations, models

SQLITE_TRIGGER = """
CREATE TRIGGER usage_enqueue_events AFTER INSERT ON usage_usageevent FOR EACH ROW
BEGIN
    INSERT INTO usage_pendingusageevent (event_id) VALUES (NEW.id);
END
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS usage_enqueue_events"


def recreate_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)
        schema_editor.execute(SQLITE_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0006_seed_provider_prices"),
    ]

    operations = [
        migrations.AddField(
            model_name="usageevent",
            name="reasoning_tokens",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.RunPython(recreate_sqlite_trigger, recreate_sqlite_trigger),
    ]
