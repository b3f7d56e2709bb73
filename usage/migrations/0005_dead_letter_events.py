"""Dead-letter usage events: events the rollup set aside because they cannot be added to the
aggregates. A new table only; the events table (and so its SQLite trigger) is untouched.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0004_aggregate_fillfactor"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeadLetterUsageEvent",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="usage.usageevent",
                    ),
                ),
                ("reason", models.TextField()),
                ("set_aside_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "dead-letter usage event",
            },
        ),
    ]
