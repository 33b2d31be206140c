"""Curation state: runs, the decisions they made (enough to undo each exactly), stored MinHash
signatures, and PII findings with their review state."""

from django.conf import settings
from django.db import models


class CurationRun(models.Model):
    """One application of a pipeline (ordered steps with configs) to a dataset."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        REVERTED = "reverted"

    dataset = models.ForeignKey("corpus.Dataset", related_name="curation_runs",
                                on_delete=models.CASCADE)
    pipeline = models.JSONField(help_text="[{'step': name, 'config': {...}}, ...], validated")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    # Per step: counts by action and rule, examples, and step-specific figures (cluster sizes).
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["dataset", "-id"], name="curationrun_dataset")]

    def __str__(self) -> str:
        return f"curation run #{self.pk} on {self.dataset_id} ({self.status})"


class CurationDecision(models.Model):
    """What one step did to one record or response, and what was there before."""

    class Action(models.TextChoices):
        KEPT = "kept"            # a cluster's representative (recorded for the report/cluster)
        DROPPED = "dropped"
        REDACTED = "redacted"
        FLAGGED = "flagged"      # found, left unchanged (e.g. PII with the "flag" policy)

    run = models.ForeignKey(CurationRun, related_name="decisions", on_delete=models.CASCADE)
    step_index = models.PositiveIntegerField()
    step = models.CharField(max_length=32)
    record = models.ForeignKey("corpus.Record", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+")
    response = models.ForeignKey("corpus.Response", null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    # A short machine-readable name of the rule that fired, e.g. "near_duplicate", "pii:EMAIL".
    rule = models.CharField(max_length=64)
    reason = models.TextField()
    cluster = models.CharField(max_length=64, blank=True, default="")
    similarity = models.FloatField(null=True, blank=True)
    # Exactly what to put back on revert.
    previous_status = models.CharField(max_length=16, blank=True, default="")
    previous_reason = models.TextField(blank=True, default="")
    previous_dup_cluster = models.CharField(max_length=64, blank=True, default="")
    field = models.CharField(max_length=16, blank=True, default="",
                             help_text="For redactions: prompt, context or text")
    previous_text = models.TextField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["run", "step_index", "id"], name="curationdecision_run"),
            models.Index(fields=["run", "rule"], name="curationdecision_rule"),
        ]


class RecordSignature(models.Model):
    """A record's MinHash signature under one shingle scheme, so later runs never rehash it."""

    record = models.ForeignKey("corpus.Record", on_delete=models.CASCADE, related_name="+")
    scheme = models.CharField(max_length=64, help_text="minhash.ShingleScheme.key")
    # The text the signature was computed from, so an edited record is signed again.
    text_hash = models.CharField(max_length=32)
    signature = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["record", "scheme"],
                                               name="recordsignature_unique")]
        indexes = [models.Index(fields=["scheme", "record"], name="recordsignature_scheme")]


class PIIFinding(models.Model):
    """One detected entity: where, what, how sure, what it was replaced with, and its review."""

    class Review(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        EDITED = "edited"
        REJECTED = "rejected"      # a false alarm: the original text is put back

    run = models.ForeignKey(CurationRun, related_name="pii_findings", on_delete=models.CASCADE)
    decision = models.ForeignKey(CurationDecision, null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="findings")
    record = models.ForeignKey("corpus.Record", on_delete=models.CASCADE, related_name="+")
    response = models.ForeignKey("corpus.Response", null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="+")
    field = models.CharField(max_length=16)
    entity_type = models.CharField(max_length=32)
    start = models.PositiveIntegerField(help_text="Offsets in the original text")
    end = models.PositiveIntegerField()
    score = models.FloatField()
    original = models.TextField()
    policy = models.CharField(max_length=8)
    replacement = models.TextField(blank=True, default="")
    review_status = models.CharField(max_length=16, choices=Review.choices,
                                     default=Review.PENDING)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["review_status", "id"], name="piifinding_review")]
