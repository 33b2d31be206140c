"""Annotation projects: which records people judge, with which questions, and who does it.

The answers themselves are corpus Feedback rows (one table for human and model judgement);
this app keeps the work around them: items, leases and submissions (one `Assignment` row per
item and annotator), comments (Feedback has no comment kind) and the project set-up.
"""

from django.conf import settings
from django.db import models

from corpus.models import Dataset, Record


class AnnotationProject(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    # Deleting a dataset deletes its projects: their Feedback goes with the records anyway.
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="annotation_projects")
    # {"status": "kept", "source": "synth", "metadata": {"category": "open_qa"}}; see annotate.setup
    record_filter = models.JSONField(default=dict, blank=True)
    # [{"name": "quality", "kind": "rating", "title": "...", "scale": 5, "aspects": [...]}, ...]
    questions = models.JSONField(default=list)
    guidelines = models.TextField(blank=True, default="", help_text="Markdown")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotators per item")
    lease_seconds = models.PositiveIntegerField(default=15 * 60)
    # The chance that `next` serves a gold item (while the annotator has gold items left).
    gold_rate = models.FloatField(default=0.0)
    shuffle_responses = models.BooleanField(default=True)
    max_responses = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Show at most this many responses per item"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="ProjectMember", related_name="annotation_projects"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name

    def question(self, name: str) -> dict | None:
        return next((q for q in self.questions if q["name"] == name), None)


class ProjectMember(models.Model):
    class Role(models.TextChoices):
        MANAGER = "manager"
        ANNOTATOR = "annotator"
        REVIEWER = "reviewer"

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    # A manager excluded this annotator's work: their feedback is marked and not counted.
    excluded = models.BooleanField(default=False)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="annotate_member_once")
        ]


class Item(models.Model):
    """One record to judge in a project.

    `claimed` = submissions + live leases, kept in step with the assignments inside the
    transaction that changes them. The queue filters on it while holding the row lock, so
    PostgreSQL's re-check of a row updated under us sees the current count (a sub-select
    counting assignments would read a stale snapshot and over-collect).
    """

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="items")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="+")
    # The responses to judge, fixed when the item is made so every annotator judges the same set.
    response_ids = models.JSONField(default=list)
    claimed = models.PositiveIntegerField(default=0)
    submitted = models.PositiveIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    # {question name: answer} in the submit format, with response ids; see annotate.answers
    gold_answers = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "record"], name="annotate_item_once")
        ]
        indexes = [
            # The queue's order (breadth-first: most claimed first, then oldest), so a claim
            # reads the first unlocked row of an index scan instead of sorting the project.
            models.Index(fields=["project", "is_gold", "-claimed", "id"], name="annotate_item_queue"),
        ]


class Assignment(models.Model):
    """An annotator's turn at an item: a lease that becomes a submission (or a skip).

    One row per (item, annotator), so nobody gets an item twice, even under races.
    """

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"
        EXCLUDED = "excluded"  # submitted, then the manager excluded the annotator's work

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    # Response ids in the order this annotator saw them (position-bias analysis).
    response_order = models.JSONField(default=list)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    client_key = models.CharField(max_length=100, null=True, blank=True)
    answers = models.JSONField(default=dict, blank=True)
    # What the submission wrote, so undo removes exactly that.
    feedback_ids = models.JSONField(default=list, blank=True)
    created_response_ids = models.JSONField(default=list, blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="annotate_assignment_once"),
            models.UniqueConstraint(
                fields=["project", "annotator", "client_key"], name="annotate_client_key_once"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "annotator", "status"], name="annotate_assign_mine"),
            models.Index(fields=["project", "status", "expires_at"], name="annotate_assign_expiry"),
        ]


class Comment(models.Model):
    """Free-text answers to `comment` questions."""

    assignment = models.ForeignKey(Assignment, null=True, on_delete=models.CASCADE, related_name="comments")
    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="comments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="comments")
    question = models.CharField(max_length=100)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Review(models.Model):
    """A reviewer's final answer to one question of one item; its Feedback rows carry
    `"final": true`, and dataset builders use them instead of the annotators' rows."""

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="reviews")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reviews")
    question = models.CharField(max_length=100)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    answer = models.JSONField()
    feedback_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "question"], name="annotate_review_once")
        ]
