"""A real `manage.py worker` killed with SIGKILL mid-job: the next worker resumes the job,
and nothing is written twice. Also: a job whose worker went silent elsewhere is recovered,
and a job out of attempts fails with the reason and undoes its writes."""

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from corpus.importing import KIND, ImportRequest
from corpus.models import Dataset, Record
from jobs.models import Job
from jobs.runner import create_job, recover_stale_jobs
from tests.conftest import write_jsonl
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 30_000


def test_sigkilled_worker_job_is_resumed_without_duplicates(processes, tmp_path):
    dataset = Dataset.objects.create(name="big")
    path = write_jsonl(tmp_path / "big.jsonl", ({"id": i, "text": f"document {i}"} for i in range(ROWS)))
    params = ImportRequest(dataset_id=dataset.pk, path=str(path), filename=path.name).as_params()
    job = create_job(KIND, params=params, subject=f"dataset:{dataset.pk}")  # autocommit: enqueued now

    small_batches = {"WINNOW_IMPORT_BATCH_SIZE": "300"}
    first = processes.worker("worker-1", env=small_batches)

    def mid_write():
        job.refresh_from_db()
        return job.state.get("line") and job.state["line"] < ROWS - 3000

    wait_for(mid_write, timeout=120, every=0.05, what="the import to commit a few batches")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # the dead worker left it so
    written_at_kill = Record.objects.filter(dataset=dataset).count()
    assert 0 < written_at_kill < ROWS

    processes.worker("worker-2", env=small_batches)

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, timeout=180, what="the second worker to finish the job")
    assert job.status == Job.Status.SUCCEEDED, (job.error, processes.log("worker-2"))
    assert job.attempts == 2
    assert Record.objects.filter(dataset=dataset).count() == ROWS
    ids = Record.objects.filter(dataset=dataset).values_list("external_id", flat=True)
    assert len(set(ids)) == ROWS
    messages = list(job.log_entries.values_list("message", flat=True))
    assert any("is gone; requeued to resume" in m for m in messages), messages
    assert any("resuming after line" in m for m in messages), messages
    statuses = sorted(DBTaskResult.objects.values_list("status", flat=True))
    assert statuses == ["FAILED", "SUCCESSFUL"]  # the dead attempt's queue row is closed too


def test_silent_worker_on_another_host_is_detected_by_heartbeat(transactional_db, settings):
    settings.WINNOW_JOB_STALE_SECONDS = 30
    stale = Job.objects.create(kind=KIND, status=Job.Status.RUNNING, attempts=1, worker="gpu-host-7:4242",
                               heartbeat_at=timezone.now() - timedelta(seconds=31))
    fresh = Job.objects.create(kind=KIND, status=Job.Status.RUNNING, attempts=1, worker="gpu-host-7:4243",
                               heartbeat_at=timezone.now() - timedelta(seconds=5))
    recovered = recover_stale_jobs()
    assert [j.pk for j in recovered] == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Job.Status.QUEUED and fresh.status == Job.Status.RUNNING
    assert "no heartbeat from worker gpu-host-7:4242" in stale.log_entries.last().message
    assert DBTaskResult.objects.filter(args_kwargs__args=[stale.pk]).exists()  # requeued for real


def test_job_out_of_attempts_fails_with_the_reason_and_undoes_its_writes(transactional_db, settings):
    settings.WINNOW_JOB_STALE_SECONDS = 30
    dataset = Dataset.objects.create(name="half")
    job = Job.objects.create(kind=KIND, status=Job.Status.RUNNING, attempts=3, max_attempts=3,
                             worker="elsewhere:1", heartbeat_at=timezone.now() - timedelta(minutes=5),
                             params={"dataset_id": dataset.pk, "path": "/nonexistent", "filename": "x"})
    Record.objects.create(dataset=dataset, prompt="half-written", job=job)
    recover_stale_jobs()
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "gave up after 3 attempt(s)" in job.error and "no heartbeat" in job.error
    assert not Record.objects.filter(dataset=dataset).exists()


def test_worker_shuts_down_cleanly_on_sigterm(processes):
    worker = processes.worker("worker-term")
    wait_for(lambda: "Starting worker" in processes.log("worker-term"), timeout=60, what="worker start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
