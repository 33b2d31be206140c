from django.db import migrations, models


def unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "winnow_ratelimit" SET UNLOGGED')


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="RateLimit",
            fields=[
                ("key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("tat", models.FloatField()),
            ],
            options={"db_table": "winnow_ratelimit"},
        ),
        migrations.RunPython(unlogged, migrations.RunPython.noop),
    ]
