from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="ServerProcess",
            fields=[
                (
                    "id",
                    models.CharField(
                        help_text="host:pid:random, fixed for the process's life.",
                        max_length=80,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("hostname", models.CharField(blank=True, max_length=255)),
                ("pid", models.PositiveIntegerField(default=0)),
                (
                    "pid_namespace",
                    models.CharField(
                        blank=True, help_text="Processes of one namespace see each other's PIDs.", max_length=40
                    ),
                ),
                ("started_at", models.DateTimeField()),
                ("heartbeat_at", models.DateTimeField(db_index=True)),
            ],
            options={"verbose_name": "server process"},
        ),
    ]
