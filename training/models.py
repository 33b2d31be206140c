"""Training runs: what was asked (method, base model, snapshot, mode, hyper-parameters), what
happened (status, metrics, checkpoints, logs) and what came out (evaluation, registered model).

The model registry itself is corpus.models.RegisteredModel: training writes rows there with
origin "trained"; synth serves them.
"""

from pathlib import Path

from django.conf import settings
from django.db import models


class TrainingRun(models.Model):
    class Method(models.TextChoices):
        SFT = "sft"
        PRETRAIN = "pretrain"      # continued pre-training on text snapshots
        REWARD = "reward"
        RLHF = "rlhf"              # reward model as reward function, RLOO or GRPO
        DPO = "dpo"
        KTO = "kto"
        ORPO = "orpo"

    class Mode(models.TextChoices):
        FULL = "full"
        PARTIAL = "partial"        # freeze the first k layers, or all but named modules
        LORA = "lora"
        QLORA = "qlora"            # 4-bit NF4 base + LoRA; CUDA only

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    name = models.CharField(max_length=200, blank=True, default="")
    method = models.CharField(max_length=16, choices=Method.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.LORA)
    base_model = models.ForeignKey(
        "corpus.RegisteredModel", on_delete=models.PROTECT, related_name="training_runs"
    )
    snapshot = models.ForeignKey(
        "corpus.Snapshot", on_delete=models.PROTECT, related_name="training_runs"
    )
    # RLHF: the reward model that scores generations (a full-format registered model).
    reward_model = models.ForeignKey(
        "corpus.RegisteredModel", null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    # The resolved hyper-parameters: the request merged over the method's defaults.
    config = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=64, blank=True, default="")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # The job running the current attempt; earlier attempts (resume) stay in jobs.
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # {"before": {...}, "after": {...}, "generation": {...}}: see training.evaluation.
    evaluation = models.JSONField(default=dict, blank=True)
    win_rate = models.FloatField(null=True, blank=True,
                                 help_text="Trained vs base on held-out prompts (rule judge)")
    artifact = models.ForeignKey(
        "corpus.RegisteredModel", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text="The adapter or full model this run produced",
    )
    merged_model = models.ForeignKey(
        "corpus.RegisteredModel", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text="The adapter merged into its base, for serving",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.method}/{self.mode} on {self.base_model_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def output_dir(self) -> Path:
        """Checkpoints, artifacts and the trainer's log live here (DATA_DIR/training/runs/<id>)."""
        return Path(settings.DATA_DIR) / "training" / "runs" / str(self.pk)

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def artifact_dir(self) -> Path:
        return self.output_dir / "artifact"

    @property
    def merged_dir(self) -> Path:
        return self.output_dir / "merged"

    @property
    def log_path(self) -> Path:
        return self.output_dir / "trainer.log"


class TrainingMetric(models.Model):
    """One logged point of a run: the trainer's `on_log` (train or eval) as it happened."""

    class Split(models.TextChoices):
        TRAIN = "train"
        EVAL = "eval"
        SUMMARY = "summary"    # the trainer's closing line: runtime, mean train loss

    run = models.ForeignKey(TrainingRun, related_name="metrics", on_delete=models.CASCADE)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    step = models.PositiveIntegerField()
    epoch = models.FloatField(null=True, blank=True)
    loss = models.FloatField(null=True, blank=True)
    learning_rate = models.FloatField(null=True, blank=True)
    grad_norm = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    # Every number the trainer logged at this point (rewards/margins, accuracy, ...).
    values = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"], name="trainingmetric_run")]


class TrainingCheckpoint(models.Model):
    run = models.ForeignKey(TrainingRun, related_name="checkpoints", on_delete=models.CASCADE)
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="trainingcheckpoint_run_step")
        ]
