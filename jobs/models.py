"""The Job row: what the UI, the API and the CLI read about background work.

The queue (django-tasks-db's rows) only says "run job N". Everything a person wants to know —
status, progress, heartbeat, error, log — lives here, so the queue backend can change without
touching any reader.
"""

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=64, help_text="Registered handler name, e.g. corpus.import")
    queue = models.CharField(max_length=32, default="default")
    subject = models.CharField(
        max_length=64, blank=True, default="", help_text='What the job works on, e.g. "dataset:3"'
    )
    params = models.JSONField(default=dict, blank=True)
    # Handler checkpoint: what a resumed attempt needs to skip finished work.
    state = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_stage = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=128, blank=True, default="", help_text="host:pid")
    task_id = models.CharField(max_length=64, blank=True, default="")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
            models.Index(fields=["subject", "-id"], name="job_subject"),
            models.Index(fields=["kind", "-id"], name="job_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_fraction(self) -> float | None:
        if not self.progress_total:
            return None
        return min(1.0, self.progress_done / self.progress_total)


class JobLogEntry(models.Model):
    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    job = models.ForeignKey(Job, related_name="log_entries", on_delete=models.CASCADE)
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "-id"], name="joblog_job_tail")]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:80]}"
