"""Trainer callbacks that run inside the trainer process: metrics and progress to the database,
cancellation (checkpoint, then stop), checkpoint rows, ULMFiT-style gradual unfreezing."""

from __future__ import annotations

import math
import time

from django.db import close_old_connections
from transformers import TrainerCallback

from jobs.models import Job

from .models import TrainingCheckpoint, TrainingMetric, TrainingRun

# How often (seconds) the trainer writes its step to the run row and looks for a cancel request.
POLL_SECONDS = 1.0

_COLUMNS = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
            "epoch": "epoch"}


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def gpu_memory() -> dict:
    """Peak GPU memory of this process in MiB (what PyTorch allocated, and what its caching
    allocator held), for the run's summary; nothing without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


class DatabaseCallback(TrainerCallback):
    """Streams each log point to TrainingMetric, the step to the run row, and stops the run
    (after saving a checkpoint) when its job is asked to cancel."""

    def __init__(self, run: TrainingRun, job_id: int | None):
        self.run_id = run.pk
        self.job_id = job_id
        self.cancelled = False
        self._last_poll = 0.0
        self._last_tokens: tuple[float, float] | None = None  # (time, tokens seen)

    def _primary(self, state) -> bool:
        return state.is_world_process_zero

    def on_train_begin(self, args, state, control, **kwargs):
        if self._primary(state):
            TrainingRun.objects.filter(pk=self.run_id).update(
                total_steps=state.max_steps, step=state.global_step, stage="training")

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if now - self._last_poll < POLL_SECONDS and state.global_step < state.max_steps:
            return control
        self._last_poll = now
        close_old_connections()
        if self._primary(state):
            TrainingRun.objects.filter(pk=self.run_id).update(
                step=state.global_step, total_steps=state.max_steps)
        if self.job_id and Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            # Cancel = checkpoint, then stop: a resumed run picks up from this step.
            self.cancelled = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._primary(state) or not logs:
            return control
        eval_point = any(key.startswith("eval_") for key in logs)
        values = {k: _number(v) for k, v in logs.items() if _number(v) is not None}
        tokens_per_second = None
        tokens = values.get("num_tokens") or values.get("num_input_tokens_seen")
        now = time.monotonic()
        if tokens is not None and not eval_point:
            if self._last_tokens and tokens > self._last_tokens[1]:
                elapsed = now - self._last_tokens[0]
                if elapsed > 0:
                    tokens_per_second = (tokens - self._last_tokens[1]) / elapsed
            self._last_tokens = (now, tokens)
        prefix = "eval_" if eval_point else ""
        split = TrainingMetric.Split.EVAL if eval_point else TrainingMetric.Split.TRAIN
        if "train_runtime" in logs:
            split, prefix = TrainingMetric.Split.SUMMARY, "train_"
            values.update(gpu_memory())
        TrainingMetric.objects.create(
            run_id=self.run_id,
            split=split,
            step=state.global_step,
            epoch=_number(state.epoch),
            loss=values.get(f"{prefix}loss"),
            learning_rate=values.get("learning_rate"),
            grad_norm=values.get("grad_norm"),
            tokens_per_second=tokens_per_second,
            values=values,
        )
        return control

    def on_save(self, args, state, control, **kwargs):
        if self._primary(state):
            path = f"{args.output_dir}/checkpoint-{state.global_step}"
            TrainingCheckpoint.objects.update_or_create(
                run_id=self.run_id, step=state.global_step, defaults={"path": path})
            # The trainer prunes old checkpoints (save_total_limit): keep the rows in step.
            from pathlib import Path

            for row in TrainingCheckpoint.objects.filter(run_id=self.run_id):
                if not Path(row.path).is_dir() and row.step != state.global_step:
                    row.delete()
        return control


class GradualUnfreezingCallback(TrainerCallback):
    """ULMFiT's gradual unfreezing: start with only the top layer (and the head) trainable, then
    unfreeze one more layer, top down, every `every` optimizer steps. The optimizer holds every
    parameter from the start (frozen ones simply get no gradient)."""

    def __init__(self, layer_groups: list[list], every: int):
        # layer_groups[0] is the bottom layer; the head/top group is always trainable.
        self.layer_groups = layer_groups
        self.every = every
        self.unfrozen = 0

    def _apply(self, count: int) -> None:
        total = len(self.layer_groups)
        for index, params in enumerate(self.layer_groups):
            trainable = index >= total - count
            for param in params:
                param.requires_grad_(trainable)
        self.unfrozen = count

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(min(len(self.layer_groups), 1 + state.global_step // self.every))
        return control

    def on_step_end(self, args, state, control, **kwargs):
        wanted = min(len(self.layer_groups), 1 + state.global_step // self.every)
        if wanted != self.unfrozen:
            self._apply(wanted)
        return control
