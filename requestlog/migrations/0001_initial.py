"""Request logs: metadata beside usage events, bodies, media and logging levels."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_provider_names_and_key_cache_generation"),
        ("usage", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MediaObject",
            fields=[
                ("sha256", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("content_type", models.CharField(max_length=100)),
                ("size", models.BigIntegerField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "last_seen_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
            ],
        ),
        migrations.CreateModel(
            name="RequestLog",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("occurred_at", models.DateTimeField()),
                ("request_id", models.CharField(max_length=100)),
                (
                    "level",
                    models.CharField(
                        choices=[
                            ("off", "Off (usage only)"),
                            ("metadata", "Metadata"),
                            ("full", "Full (request and response bodies)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("surface", models.CharField(blank=True, max_length=16)),
                ("credential_fingerprint", models.CharField(blank=True, max_length=16)),
                ("user_agent", models.CharField(blank=True, max_length=300)),
                ("attempts", models.JSONField(blank=True, default=list)),
                ("has_body", models.BooleanField(default=False)),
                (
                    "event",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="request_log",
                        to="usage.usageevent",
                        to_field="event_id",
                    ),
                ),
            ],
            options={
                "ordering": ("-occurred_at",),
            },
        ),
        migrations.CreateModel(
            name="RequestBody",
            fields=[
                (
                    "log",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="body",
                        serialize=False,
                        to="requestlog.requestlog",
                    ),
                ),
                ("occurred_at", models.DateTimeField(db_index=True)),
                ("request_headers", models.JSONField(blank=True, default=dict)),
                ("request", models.BinaryField(blank=True, default=b"")),
                ("response", models.BinaryField(blank=True, default=b"")),
                ("stream", models.BinaryField(blank=True, default=b"")),
                ("notes", models.JSONField(blank=True, default=list)),
            ],
        ),
        migrations.CreateModel(
            name="LogLevelPolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "level",
                    models.CharField(
                        choices=[
                            ("off", "Off (usage only)"),
                            ("metadata", "Metadata"),
                            ("full", "Full (request and response bodies)"),
                        ],
                        max_length=8,
                    ),
                ),
                (
                    "access_key",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.accesskey",
                    ),
                ),
                (
                    "user",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "logging level",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("access_key__isnull", True), ("user__isnull", False)),
                            models.Q(("access_key__isnull", False), ("user__isnull", True)),
                            _connector="OR",
                        ),
                        name="loglevelpolicy_one_scope",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="RequestMedia",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "media",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="requestlog.mediaobject",
                    ),
                ),
                (
                    "body",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="media",
                        to="requestlog.requestbody",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(fields=["-occurred_at"], name="requestlog_time"),
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(fields=["request_id"], name="requestlog_request_id"),
        ),
        migrations.AddConstraint(
            model_name="requestmedia",
            constraint=models.UniqueConstraint(
                fields=("body", "media"), name="requestmedia_unique"
            ),
        ),
    ]
