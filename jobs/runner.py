"""Creating, running, cancelling and recovering jobs.

A job runs wherever `run_job` is called: in a `manage.py worker` process (the normal path,
through the tasks queue) or in the foreground of the `winnow` CLI. Either way the row is
claimed first, so two processes never run one attempt of a job twice.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .context import JobContext
from .models import Job, JobLogEntry
from .registry import JobCancelled, JobFailed, get_handler

logger = logging.getLogger("winnow.jobs")
HOST = socket.gethostname()


def worker_name() -> str:
    return f"{HOST}:{os.getpid()}"


def create_job(
    kind: str,
    *,
    params: dict | None = None,
    subject: str = "",
    created_by=None,
    enqueue: bool = True,
) -> Job:
    """Create a job row and, once the surrounding transaction commits, put it on its queue."""
    handler = get_handler(kind)
    job = Job.objects.create(
        kind=kind,
        queue=handler.queue,
        params=params or {},
        subject=subject,
        created_by=created_by if created_by and created_by.is_authenticated else None,
        max_attempts=settings.WINNOW_JOB_MAX_ATTEMPTS,
    )
    if enqueue:
        transaction.on_commit(lambda: send_to_queue(job.pk, job.queue))
    return job


def send_to_queue(job_id: int, queue: str) -> None:
    from .tasks import execute_job

    result = execute_job.using(queue_name=queue).enqueue(job_id)
    Job.objects.filter(pk=job_id).update(task_id=str(result.id))


def _claim(job_id: int) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist; nothing to run", job_id)
            return None
        if job.status != Job.Status.QUEUED:
            logger.info("job %s is %s, not queued; skipping", job_id, job.status)
            return None
        now = timezone.now()
        if job.cancel_requested:
            _finish(job, Job.Status.CANCELLED, now=now)
            return None
        job.status = Job.Status.RUNNING
        job.attempts += 1
        job.worker = worker_name()
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.save(update_fields=["status", "attempts", "worker", "started_at", "heartbeat_at"])
        return job


def _finish(job: Job, status: str, *, error: str = "", result=None, now=None) -> None:
    job.status = status
    job.error = error[:10_000]
    if result is not None:
        job.result = result
    job.finished_at = now or timezone.now()
    job.save(update_fields=["status", "error", "result", "finished_at"])


def _abandon(job: Job) -> None:
    handler = get_handler(job.kind)
    if handler.on_abandon is None:
        return
    try:
        handler.on_abandon(job)
    except Exception:
        logger.exception("job %s: undoing partial work failed", job.pk)
        JobLogEntry.objects.create(
            job=job,
            level=JobLogEntry.Level.ERROR,
            message="undoing partial work failed:\n" + traceback.format_exc(limit=5),
        )


def run_job(job_id: int, *, echo=None) -> Job | None:
    """Claim and run one attempt of a job. Returns the finished row, or None if not claimed."""
    job = _claim(job_id)
    if job is None:
        return None
    handler = get_handler(job.kind)
    ctx = JobContext(job, heartbeat_seconds=settings.WINNOW_JOB_HEARTBEAT_SECONDS, echo=echo)
    if ctx.resumed:
        ctx.log(f"attempt {job.attempts} of {job.max_attempts}: resuming from the last checkpoint")
    ctx.start_heartbeat()
    try:
        try:
            result = handler.func(ctx)
        finally:
            ctx.stop_heartbeat()  # also when the process is going down (SystemExit, Ctrl-C)
    except JobCancelled:
        job.refresh_from_db()
        _abandon(job)
        ctx.log("cancelled on request")
        _finish(job, Job.Status.CANCELLED)
    except JobFailed as exc:
        job.refresh_from_db()
        _abandon(job)
        ctx.log(str(exc), JobLogEntry.Level.ERROR)
        _finish(job, Job.Status.FAILED, error=str(exc), result=exc.details)
    except Exception as exc:
        job.refresh_from_db()
        _abandon(job)
        ctx.log(traceback.format_exc(limit=20), JobLogEntry.Level.ERROR)
        _finish(job, Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        job.refresh_from_db()
        done, total, stage = ctx.final_progress()
        job.progress_total = total if total is not None else done
        job.progress_done = job.progress_total
        job.progress_stage = stage
        job.save(update_fields=["progress_done", "progress_total", "progress_stage"])
        _finish(job, Job.Status.SUCCEEDED, result=result)
    return job


def request_cancel(job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next step."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            return job
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        if job.status == Job.Status.QUEUED:
            _finish(job, Job.Status.CANCELLED)
            JobLogEntry.objects.create(job=job, message="cancelled before it started")
    return job


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lost_worker(job: Job, stale_before, mine: bool = False) -> str | None:
    """Why this RUNNING job has no live worker, or None if it may still have one."""
    host, _, pid = job.worker.rpartition(":")
    if mine and job.worker == worker_name():
        return f"its worker {job.worker} lost the database connection mid-job"
    if host == HOST and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
        return f"its worker {job.worker} is gone"
    beat = job.heartbeat_at or job.started_at
    if beat is None or beat < stale_before:
        return f"no heartbeat from worker {job.worker or '?'} since {beat:%Y-%m-%d %H:%M:%S} UTC"
    return None


def recover_stale_jobs(now=None, *, mine: bool = False) -> list[Job]:
    """Requeue (or fail, when out of attempts) RUNNING jobs whose worker died.

    Run by every worker when it starts and then periodically, so a job is never left RUNNING
    forever: whichever worker notices first takes care of it. `mine=True` (a worker whose
    database went away under a job, now back and running nothing) also takes back the jobs this
    very process left RUNNING.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.WINNOW_JOB_STALE_SECONDS)
    local = Q(worker__startswith=f"{HOST}:")
    candidates = Job.objects.filter(status=Job.Status.RUNNING).filter(
        local | Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )
    recovered = []
    for job_id in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.status != Job.Status.RUNNING:
                continue
            reason = _lost_worker(job, stale_before, mine)
            if reason is None:
                continue
            _release_task_row(job)
            handler = get_handler(job.kind)
            can_retry = (
                handler.resumable
                and job.attempts < job.max_attempts
                and not job.cancel_requested
            )
            if can_retry:
                job.status = Job.Status.QUEUED
                job.worker = ""
                job.save(update_fields=["status", "worker"])
                JobLogEntry.objects.create(
                    job=job,
                    level=JobLogEntry.Level.WARNING,
                    message=f"{reason}; requeued to resume (attempt {job.attempts + 1} of "
                    f"{job.max_attempts})",
                )
                transaction.on_commit(lambda j=job: send_to_queue(j.pk, j.queue))
            else:
                if job.cancel_requested:
                    status, error = Job.Status.CANCELLED, ""
                else:
                    status = Job.Status.FAILED
                    error = f"{reason}; gave up after {job.attempts} attempt(s)"
                    if not handler.resumable:
                        error = f"{reason}; this kind of job cannot resume"
                _abandon(job)
                JobLogEntry.objects.create(
                    job=job, level=JobLogEntry.Level.ERROR, message=error or "cancelled"
                )
                _finish(job, status, error=error)
            recovered.append(job)
            logger.warning("job %s: %s -> %s", job.pk, reason, job.status)
    return recovered


def _release_task_row(job: Job) -> None:
    """Mark the queue row of a dead attempt failed so the queue does not show it RUNNING."""
    if not job.task_id:
        return
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(pk=job.task_id, status="RUNNING").update(
        status="FAILED", finished_at=timezone.now()
    )
