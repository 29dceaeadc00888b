from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("credits", "0003_expiring_grants")]

    operations = [
        migrations.AddField(
            model_name="hold",
            name="owner",
            field=models.CharField(
                blank=True,
                help_text="Server process that settles it (realtime.processes); when it dies the hold is released. "
                "Empty: settled by its job or at its expiry.",
                max_length=80,
            ),
        ),
    ]
