"""The one place Winnow imports the Django tasks API.

On Django 5.2 it comes from the `django-tasks` backport; on Django 6 change this import to
`from django.tasks import task, default_task_backend` and nothing else moves.
"""

from django_tasks import default_task_backend, task, task_backends  # noqa: F401
