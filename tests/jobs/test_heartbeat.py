"""The heartbeat side thread of a running job."""

import threading
import time

import pytest

from jobs.context import JobContext
from jobs.models import Job
from jobs.registry import JobCancelled

pytestmark = pytest.mark.django_db(transaction=True)


def test_heartbeat_writes_progress_and_stops_when_the_job_is_taken_away():
    job = Job.objects.create(kind="corpus.import", status=Job.Status.RUNNING, worker="here:1")
    ctx = JobContext(job, heartbeat_seconds=0.2)
    ctx.start_heartbeat()
    try:
        ctx.progress(5, 10)
        time.sleep(1.3)
        job.refresh_from_db()
        assert (job.progress_done, job.progress_total) == (5, 10) and job.heartbeat_at
        # Another worker's sweep requeued it: this attempt must stop beating and stop working.
        Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, worker="")
        deadline = time.monotonic() + 5
        while ctx._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not ctx._thread.is_alive()
        with pytest.raises(JobCancelled):
            ctx.progress(6, 10)  # JobCancelled: the handler stops at its next step
    finally:
        ctx.stop_heartbeat()
    job.refresh_from_db()
    assert job.progress_done == 5  # nothing written after the job was taken away


def test_run_job_stops_the_heartbeat_even_when_the_process_exits(settings):
    from jobs.registry import _HANDLERS, JobHandler
    from jobs.runner import create_job, run_job

    def dies(ctx):
        raise SystemExit("going down")

    _HANDLERS["test.dies"] = JobHandler("test.dies", dies)
    try:
        job = create_job("test.dies", enqueue=False)
        before = {t.name for t in threading.enumerate()}
        with pytest.raises(SystemExit):
            run_job(job.pk)
        assert f"job-{job.pk}-heartbeat" not in {t.name for t in threading.enumerate()} - before
    finally:
        del _HANDLERS["test.dies"]
