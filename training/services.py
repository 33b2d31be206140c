"""Starting, cancelling and resuming runs: what the API, the CLI and the admin call."""

from __future__ import annotations

from django.db import transaction

from corpus.models import RegisteredModel, Snapshot
from jobs.models import Job
from jobs.runner import create_job, request_cancel

from .config import ConfigError, validate_request
from .jobs import KIND
from .models import TrainingRun


class RunStateError(Exception):
    """The run is not in a state that allows this (e.g. resuming a running run)."""


def start_run(*, method: str, mode: str, base_model: RegisteredModel, snapshot: Snapshot,
              config: dict | None = None, reward_model: RegisteredModel | None = None,
              name: str = "", created_by=None, enqueue: bool = True) -> TrainingRun:
    """Validate, then create the run and its job in one transaction (ConfigError: nothing is
    written)."""
    resolved = validate_request(method=method, mode=mode, base_model=base_model,
                                snapshot=snapshot, overrides=config or {},
                                reward_model=reward_model)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            name=name, method=method, mode=mode, base_model=base_model, snapshot=snapshot,
            reward_model=reward_model, config=resolved,
            created_by=created_by if created_by and created_by.is_authenticated else None,
        )
        run.job = _new_job(run, created_by, enqueue)
        run.save(update_fields=["job"])
    return run


def _new_job(run: TrainingRun, user, enqueue: bool) -> Job:
    return create_job(KIND, params={"run_id": run.pk}, subject=f"training-run:{run.pk}",
                      created_by=user, enqueue=enqueue)


def cancel_run(run: TrainingRun) -> TrainingRun:
    """Queued: cancelled at once. Running: the trainer saves a checkpoint, then stops."""
    if run.job_id:
        job = request_cancel(run.job)
        if job.status == Job.Status.CANCELLED:
            TrainingRun.objects.filter(pk=run.pk).exclude(
                status__in=TrainingRun.FINISHED).update(status=TrainingRun.Status.CANCELLED)
    run.refresh_from_db()
    return run


def resume_run(run: TrainingRun, user=None, enqueue: bool = True) -> TrainingRun:
    """A failed or cancelled run continues from its last checkpoint in a new job."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            raise RunStateError(f"only failed or cancelled runs resume; run {run.pk} is {run.status}")
        run.status = TrainingRun.Status.QUEUED
        run.error = ""
        run.finished_at = None
        run.job = _new_job(run, user, enqueue)
        run.save(update_fields=["status", "error", "finished_at", "job"])
    return run


__all__ = ["ConfigError", "RunStateError", "start_run", "cancel_run", "resume_run"]
