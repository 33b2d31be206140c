"""The corpus: datasets of records (the prompt side), their responses, and feedback on them.

Human and model feedback share one table, so RLHF and RLAIF data come out of the same
snapshot builders. Curation sets `status` on records and responses; nothing is deleted.
"""

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="datasets",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class CurationStatus(models.TextChoices):
    KEPT = "kept"
    DROPPED = "dropped"


class AuthorKind(models.TextChoices):
    HUMAN = "human"
    MODEL = "model"


class Record(models.Model):
    """One prompt: an instruction (with optional context) or a chat ending in a user turn.

    `prompt` is the instruction or the last user turn; earlier turns of a conversation
    (system prompt included) sit in `history` as chat messages. For `text` records
    (continued pre-training) `prompt` holds the document.
    """

    class Kind(models.TextChoices):
        INSTRUCTION = "instruction"
        CHAT = "chat"
        TEXT = "text"

    # Indexed as (dataset, id) below, which also serves cursor paging; a plain dataset index
    # lures SQLite's planner away from the (dataset, external_id) unique index.
    dataset = models.ForeignKey(
        Dataset, related_name="records", on_delete=models.CASCADE, db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.INSTRUCTION)
    prompt = models.TextField()
    context = models.TextField(blank=True, default="")
    history = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    source = models.CharField(
        max_length=200, blank=True, default="", help_text='Where it came from, e.g. "import"'
    )
    provenance = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=CurationStatus.choices, default=CurationStatus.KEPT
    )
    status_reason = models.TextField(blank=True, default="")
    # Set by curation: records in one near-duplicate cluster share it (kept representative
    # included), so snapshot splits keep a cluster on one side. Empty: in no cluster.
    dup_cluster = models.CharField(max_length=64, blank=True, default="", db_default="")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The job that wrote this record, so an abandoned job can undo its writes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Not partial: NULLs are distinct in a unique index (SQLite and PostgreSQL alike), so
            # records without an external id are unconstrained, and the planner can use it.
            models.UniqueConstraint(
                fields=["dataset", "external_id"], name="record_external_id_unique_per_dataset"
            )
        ]
        indexes = [
            models.Index(fields=["dataset", "id"], name="record_dataset_id"),
            models.Index(fields=["dataset", "status", "id"], name="record_dataset_status"),
            models.Index(fields=["dataset", "source", "id"], name="record_dataset_source"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prompt[:60]}"

    def as_messages(self) -> list[dict]:
        """The prompt side as chat messages (context folded into the user turn)."""
        content = self.prompt if not self.context else f"{self.prompt}\n\n{self.context}"
        return [*self.history, {"role": "user", "content": content}]


class Response(models.Model):
    # Indexed as (record, id) below; a second index on record alone only slows inserts.
    record = models.ForeignKey(
        Record, related_name="responses", on_delete=models.CASCADE, db_index=False
    )
    text = models.TextField()
    author_kind = models.CharField(max_length=8, choices=AuthorKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    model_name = models.CharField(max_length=200, blank=True, default="")
    generation_params = models.JSONField(default=dict, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    # A human rewrite points at the response it rewrote.
    edited_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="edits"
    )
    status = models.CharField(
        max_length=16, choices=CurationStatus.choices, default=CurationStatus.KEPT
    )
    status_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["record", "id"], name="response_record"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.text[:60]}"


class Feedback(models.Model):
    """A judgement on a record's responses. `payload` is validated per kind (corpus.feedback)
    and names responses by id; they all belong to `record`."""

    class Kind(models.TextChoices):
        RATING = "rating"
        RANKING = "ranking"
        PAIRWISE = "pairwise"
        BINARY = "binary"
        EDIT = "edit"

    # Indexed as (record, kind) below.
    record = models.ForeignKey(
        Record, related_name="feedback", on_delete=models.CASCADE, db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField()
    author_kind = models.CharField(max_length=8, choices=AuthorKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    model_name = models.CharField(max_length=200, blank=True, default="")
    provenance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "feedback"
        indexes = [
            models.Index(fields=["record", "kind"], name="feedback_record_kind"),
            models.Index(fields=["kind", "id"], name="feedback_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on record {self.record_id}"


class ImmutableSnapshotError(Exception):
    pass


class Snapshot(models.Model):
    """An immutable, reproducible training dataset: a folder holding `train.jsonl`,
    `test.jsonl`, `manifest.json` and `card.md` (see docs/snapshots.md).

    Training reads a snapshot through `kind`, `directory` and `counts` only; the builders
    (corpus.snapshots) own everything else about it.
    """

    class Kind(models.TextChoices):
        SFT = "sft"                 # messages, or prompt/completion
        PREFERENCE = "preference"   # prompt/chosen/rejected (+ margin, source)
        BINARY = "binary"           # prompt/completion/label (KTO)
        TEXT = "text"               # text (continued pre-training)

    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    recipe = models.JSONField(default=dict, blank=True)
    # {"train": n, "test": n, ...}; binary snapshots add "desirable" and "undesirable".
    counts = models.JSONField(default=dict, blank=True)
    # sha256 over the manifest: two builds of one recipe on the same data share it.
    content_hash = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    # What the build saw and skipped: annotators, agreement, generator models, skip reasons.
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    FILES = ("train.jsonl", "test.jsonl", "manifest.json", "card.md", "lineage.jsonl",
             "train.parquet", "test.parquet")

    def save(self, *args, **kwargs):
        # Immutable once built: a ready snapshot's rows, recipe and counts are what training
        # runs and downloads were made from. Build a new one instead.
        if self.pk is not None and Snapshot.objects.filter(pk=self.pk, status=self.Status.READY).exists():
            raise ImmutableSnapshotError(f"snapshot {self.pk} is ready and cannot change; build a new one")
        super().save(*args, **kwargs)

    @property
    def directory(self):
        """The folder that holds this snapshot's files."""
        return settings.DATA_DIR / "snapshots" / str(self.pk)


class RegisteredModel(models.Model):
    """A language model Winnow can load from local disk: the bundled SmolLM2, a folder a
    user registers, or what a training run produced. Training makes them; synth serves
    them. Nothing is ever loaded from a hub."""

    class Origin(models.TextChoices):
        BUNDLED = "bundled"
        LOCAL = "local"        # a Hugging Face folder a user registered
        TRAINED = "trained"    # produced by a training run

    class Format(models.TextChoices):
        FULL = "full"          # a complete model folder (full fine-tune, or merged adapter)
        ADAPTER = "adapter"    # a PEFT adapter folder on top of `base`

    name = models.CharField(max_length=200, unique=True)
    origin = models.CharField(max_length=16, choices=Origin.choices)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.FULL)
    path = models.CharField(max_length=1000, help_text="A local folder.")
    base = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived",
        help_text="For adapters (and trained models): the model they were trained from.",
    )
    # What produced it, e.g. {"training_run": 7, "snapshot": 3, "method": "dpo"}.
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
