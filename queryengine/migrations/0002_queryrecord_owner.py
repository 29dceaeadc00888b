from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("queryengine", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="queryrecord",
            name="owner",
            field=models.CharField(
                blank=True,
                help_text="Server process running it; when that process dies the record is failed.",
                max_length=80,
            ),
        ),
    ]
