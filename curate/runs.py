"""Curation runs as jobs: create one, run its steps with progress, resume after a crash."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from jobs.registry import JobCancelled, job_handler
from jobs.runner import create_job

from . import steps_dedup, steps_pii, steps_quality  # noqa: F401  (register the steps)
from .models import CurationRun
from .pipeline import default_pipeline, run_step, undo_decisions, validate_pipeline

KIND = "curate.run"


def start_run(dataset, pipeline=None, user=None, *, enqueue: bool = True) -> CurationRun:
    """Validate the pipeline (ValidationError names the field) and queue a run of it."""
    steps = validate_pipeline(pipeline) if pipeline is not None else default_pipeline()
    with transaction.atomic():
        run = CurationRun.objects.create(
            dataset=dataset, pipeline=steps,
            created_by=user if user is not None and user.is_authenticated else None)
        run.job = create_job(KIND, params={"run": run.pk}, subject=f"dataset:{dataset.pk}",
                             created_by=user, enqueue=enqueue)
        run.save(update_fields=["job"])
    return run


def _abandon(job) -> None:
    """A failed or cancelled run leaves nothing half-applied: undo the steps it committed."""
    run = CurationRun.objects.filter(pk=(job.params or {}).get("run")).first()
    if run is None:
        return
    with transaction.atomic():
        undo_decisions(run)
        run.decisions.all().delete()
        run.status = (CurationRun.Status.CANCELLED if job.cancel_requested
                      else CurationRun.Status.FAILED)
        run.error = job.error or ""
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])


@job_handler(KIND, on_abandon=_abandon)
def execute_run(ctx) -> dict:
    run = CurationRun.objects.select_related("dataset").get(pk=ctx.params["run"])
    if run.status == CurationRun.Status.CANCELLED:
        raise JobCancelled()
    run.status = CurationRun.Status.RUNNING
    run.save(update_fields=["status"])
    report = dict(run.report or {})
    steps = report.setdefault("steps", [])
    start = ctx.state.get("next_step", 0)
    for index in range(start, len(run.pipeline)):
        spec = run.pipeline[index]
        stage = f"{index + 1}/{len(run.pipeline)} {spec['step']}"
        ctx.progress(0, None, stage)

        def progress(done, total=None, _stage=stage):
            ctx.progress(done, total, _stage)

        # One transaction per step: its decisions, its changes and the checkpoint commit
        # together, so a resumed attempt starts at the first step that did not commit.
        with transaction.atomic():
            summary = run_step(run, index, spec, progress)
            del steps[index:]
            steps.append(summary)
            run.report = report
            run.save(update_fields=["report"])
            ctx.checkpoint(next_step=index + 1)
    report["totals"] = _totals(steps)
    run.report = report
    run.status = CurationRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save(update_fields=["report", "status", "finished_at"])
    return {"run": run.pk, **report["totals"]}


def _totals(steps: list[dict]) -> dict:
    totals: dict[str, int] = {}
    for summary in steps:
        for action, n in summary.get("counts", {}).items():
            totals[action] = totals.get(action, 0) + n
    return totals
