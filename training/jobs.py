"""The training job: runs on the `training` queue and supervises the trainer process.

The worker never trains. It starts `python -m training.run <id>` (or `accelerate launch` of it
when more than one GPU is visible), relays the run's step to the job's progress, passes a
cancel request on (the trainer saves a checkpoint, then stops) and turns the child's exit status
into the job's outcome. A worker killed mid-run takes the child with it (PDEATHSIG); the
requeued job starts a new child that resumes from the last checkpoint on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs.models import Job
from jobs.process import die_with_parent
from jobs.registry import JobCancelled, JobFailed, job_handler

from .models import TrainingRun

KIND = "training.run"
ROOT = Path(__file__).resolve().parent.parent
EXIT_CANCELLED = 3
# After a cancel request, how long the trainer gets to save its checkpoint before SIGTERM.
CANCEL_GRACE_SECONDS = 300
POLL_SECONDS = 0.5


def database_url() -> str:
    """This process's database as a DATABASE_URL for the child (tests use a test database
    whose name the child could not know otherwise)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    at = f"{auth}@" if auth else ""
    return f"postgres://{at}{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def child_environment(run: TrainingRun) -> dict:
    cache = Path(settings.DATA_DIR) / "training" / "datasets-cache"
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "WINNOW_DATA_DIR": str(settings.DATA_DIR),
        "WINNOW_MODELS_DIR": str(settings.MODELS_DIR),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(cache),
        "TOKENIZERS_PARALLELISM": "false",
    }


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch/CUDA: CPU
        return 0


def launch_command(run_id: int, job_id: int) -> list[str]:
    trainer = ["-m", "training.run", str(run_id), "--job", str(job_id)]
    gpus = visible_gpus()
    if gpus > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", str(gpus), *trainer]
    return [sys.executable, *trainer]


def mark_run(run_id: int, status: str, error: str = "") -> None:
    TrainingRun.objects.filter(pk=run_id).exclude(status__in=TrainingRun.FINISHED).update(
        status=status, error=error[:10_000], finished_at=timezone.now())


def abandon_run(job: Job) -> None:
    """The job ended failed or cancelled (also when a dead worker's job ran out of attempts)."""
    run_id = (job.params or {}).get("run_id")
    if run_id is None:
        return
    if job.cancel_requested:
        mark_run(run_id, TrainingRun.Status.CANCELLED)
    else:
        mark_run(run_id, TrainingRun.Status.FAILED, job.error or "the training job failed")


@job_handler(KIND, queue="training", on_abandon=abandon_run)
def run_training(ctx) -> dict:
    run = TrainingRun.objects.get(pk=ctx.params["run_id"])
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, job=ctx.job, error="",
        started_at=run.started_at or timezone.now(), finished_at=None)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    command = launch_command(run.pk, ctx.job.pk)
    ctx.log(f"starting the trainer: {' '.join(command[1:])}")
    with open(run.log_path, "ab") as log:
        child = subprocess.Popen(
            command, cwd=ROOT, env=child_environment(run), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        cancel_deadline = None
        try:
            while child.poll() is None:
                time.sleep(POLL_SECONDS)
                state = TrainingRun.objects.filter(pk=run.pk).values(
                    "step", "total_steps", "stage").first()
                try:
                    ctx.progress(state["step"], state["total_steps"], state["stage"] or "starting")
                except JobCancelled:
                    # The trainer reads the same cancel flag and checkpoints before it stops.
                    if cancel_deadline is None:
                        cancel_deadline = time.monotonic() + CANCEL_GRACE_SECONDS
                        ctx.log("cancel requested: the trainer saves a checkpoint, then stops")
                    elif time.monotonic() > cancel_deadline:
                        ctx.log("the trainer did not stop in time; terminating it")
                        child.send_signal(signal.SIGTERM)
                        cancel_deadline = float("inf")
        except BaseException:
            # The worker itself is going down: do not leave a trainer behind.
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=30)
            raise
    code = child.returncode
    run.refresh_from_db()
    if code == 0:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.SUCCEEDED, stage="done",
            finished_at=run.finished_at or timezone.now())
        return {"run": run.pk, "artifact": run.artifact_id, "merged_model": run.merged_model_id,
                "win_rate": run.win_rate, "steps": run.step}
    if code == EXIT_CANCELLED or cancel_deadline is not None:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.CANCELLED, finished_at=timezone.now())
        raise JobCancelled()
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    message = (f"the trainer process {how} at step {run.step}; see {run.log_path.name}. "
               f"POST /api/v1/training-runs/{run.pk}/resume continues from the last checkpoint")
    mark_run(run.pk, TrainingRun.Status.FAILED, message + "\n" + _log_tail(run.log_path))
    raise JobFailed(message)


def _log_tail(path: Path, size: int = 3000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
