"""Leave free space in aggregate pages on PostgreSQL.

The rollup adds to existing aggregate rows every minute; with room on the page PostgreSQL
updates them in place (HOT), without writing new entries into the table's five indexes.
"""

from django.db import migrations


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE usage_usageaggregate SET (fillfactor = 80)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE usage_usageaggregate RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("usage", "0003_seed_prices")]
    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
