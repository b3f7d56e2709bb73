"""Rollup bookkeeping: the queue of events not rolled up yet (filled by a trigger on insert),
the rollup state row and maintenance leases.

On SQLite, a later migration that rebuilds usage_usageevent (most AlterField/RemoveField
operations do) drops the trigger with the old table: such a migration must run SQLITE_TRIGGER
again (usage/tests/test_rollup.py checks that the trigger exists after all migrations).
"""

from django.db import migrations, models

POSTGRES_TRIGGER = """
CREATE OR REPLACE FUNCTION usage_enqueue_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_pendingusageevent (event_id) SELECT id FROM new_events;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_enqueue_events AFTER INSERT ON usage_usageevent
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION usage_enqueue_events();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS usage_enqueue_events ON usage_usageevent;
DROP FUNCTION IF EXISTS usage_enqueue_events();
"""
SQLITE_TRIGGER = """
CREATE TRIGGER usage_enqueue_events AFTER INSERT ON usage_usageevent FOR EACH ROW
BEGIN
    INSERT INTO usage_pendingusageevent (event_id) VALUES (NEW.id);
END
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS usage_enqueue_events"
ENQUEUE_EXISTING = "INSERT INTO usage_pendingusageevent (event_id) SELECT id FROM usage_usageevent"


def create_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_TRIGGER)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER)
    else:
        raise RuntimeError(f"usage rollup: unsupported database {vendor}")
    schema_editor.execute(ENQUEUE_EXISTING)


def drop_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    schema_editor.execute(POSTGRES_DROP if vendor == "postgresql" else SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="PendingUsageEvent",
            fields=[("event_id", models.BigIntegerField(primary_key=True, serialize=False))],
        ),
        migrations.CreateModel(
            name="UsageRollupState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "pruned_before",
                    models.DateTimeField(
                        blank=True,
                        help_text="Raw events that occurred before this moment may have been pruned; aggregates before it cannot be rebuilt.",
                        null=True,
                    ),
                ),
                ("last_rollup_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="MaintenanceLease",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=64, unique=True)),
                ("owner", models.CharField(blank=True, max_length=64)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
