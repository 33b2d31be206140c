"""Crashes and stops with real processes: a worker subprocess on the training queue, its
trainer child killed with SIGKILL, a cancel mid-run, and a SIGKILLed worker. Each time the
run continues from its last checkpoint and ends at the planned step with one metric per step."""

import os
import signal

import psutil
import pytest

from jobs.models import Job
from tests.e2e.conftest import Processes, wait_for
from training.models import TrainingRun

from .factories import make_snapshot

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1500)]

STEPS = 60
LONG_RUN = {"max_steps": STEPS, "save_steps": 5, "save_total_limit": 3, "max_length": 32,
            "batch_size": 1, "evaluate": False, "generation_eval": False, "learning_rate": 1e-3}


@pytest.fixture
def processes(tmp_path, transactional_db):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def start(client, tiny_model) -> TrainingRun:
    snapshot = make_snapshot("sft", train=64)
    response = client.post("/api/v1/training-runs", {
        "method": "sft", "mode": "full", "base_model": tiny_model.pk, "snapshot": snapshot.pk,
        "config": LONG_RUN}, format="json")
    assert response.status_code == 201, response.content
    return TrainingRun.objects.get(pk=response.json()["id"])


def trainer_process(worker) -> psutil.Process:
    def find():
        for child in psutil.Process(worker.pid).children(recursive=True):
            if "training.run" in " ".join(child.cmdline()):
                return child
        return None

    return wait_for(find, timeout=60, what="the trainer child process")


def past_first_checkpoint(run):
    def check():
        run.refresh_from_db()
        return run.checkpoints.exists() and 5 < run.step < STEPS - 20

    return check


def finished(run):
    def check():
        run.refresh_from_db()
        return run.is_finished and run.job and Job.objects.get(pk=run.job_id).is_finished

    return check


def assert_completed_with_one_point_per_step(run, processes, resumed_from):
    assert run.status == "succeeded", (run.error, processes.log("worker"))
    assert run.step == STEPS and run.artifact_id
    steps = list(run.metrics.filter(split="train").values_list("step", flat=True))
    assert steps == list(range(1, STEPS + 1))  # no gap, no duplicate across the restart
    events = [m for m in Job.objects.filter(subject=f"training-run:{run.pk}")
              .values_list("log_entries__message", flat=True) if m]
    assert any(f"resuming from checkpoint-{resumed_from}" in m for m in events), events


def test_killed_trainer_is_resumed_from_its_last_checkpoint(processes, manager_client, tiny_model):
    run = start(manager_client, tiny_model)
    worker = processes.worker()
    child = trainer_process(worker)
    wait_for(past_first_checkpoint(run), timeout=240, every=0.05, what="a checkpoint")
    child.send_signal(signal.SIGKILL)
    wait_for(finished(run), timeout=60, what="the job to notice the dead trainer")
    assert run.status == "failed" and "killed by signal 9" in run.error
    assert worker.poll() is None  # the worker survived its child
    last_checkpoint = max(run.checkpoints.values_list("step", flat=True))

    response = manager_client.post(f"/api/v1/training-runs/{run.pk}/resume")
    assert response.status_code == 202, response.content
    wait_for(finished(run), timeout=300, what="the resumed run")
    assert_completed_with_one_point_per_step(run, processes, last_checkpoint)


def test_cancel_checkpoints_then_stops_and_resume_finishes(processes, manager_client, tiny_model):
    run = start(manager_client, tiny_model)
    processes.worker()
    wait_for(past_first_checkpoint(run), timeout=240, every=0.05, what="a checkpoint")
    response = manager_client.post(f"/api/v1/training-runs/{run.pk}/cancel")
    assert response.status_code == 202
    wait_for(finished(run), timeout=120, what="the cancel")
    assert run.status == "cancelled" and Job.objects.get(pk=run.job_id).status == "cancelled"
    stopped_at = run.step
    assert stopped_at < STEPS
    # Cancel = checkpoint, then stop: the newest checkpoint is the step it stopped at.
    assert max(run.checkpoints.values_list("step", flat=True)) == stopped_at
    assert (run.checkpoint_dir / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()

    assert manager_client.post(f"/api/v1/training-runs/{run.pk}/resume").status_code == 202
    wait_for(finished(run), timeout=300, what="the resumed run")
    assert_completed_with_one_point_per_step(run, processes, stopped_at)


def test_sigkilled_worker_takes_its_trainer_down_and_the_next_worker_resumes(
        processes, manager_client, tiny_model):
    run = start(manager_client, tiny_model)
    first = processes.worker("worker-1")
    child = trainer_process(first)
    wait_for(past_first_checkpoint(run), timeout=240, every=0.05, what="a checkpoint")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE,
             timeout=30, what="the orphaned trainer to die")
    last_checkpoint = max(run.checkpoints.values_list("step", flat=True))

    processes.worker("worker")  # recovers the stale job and resumes it
    wait_for(finished(run), timeout=300, what="the second worker to finish the run")
    assert Job.objects.get(pk=run.job_id).attempts == 2
    assert_completed_with_one_point_per_step(run, processes, last_checkpoint)
