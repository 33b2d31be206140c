"""A generation job whose worker is SIGKILLed half-way resumes on a new worker with zero
repeated calls: every request answered before the kill is replayed from the request cache.

The loopback server holds its answers after the first half, so the kill lands at a known
point: everything answered so far is finished work, and what was in flight was not answered.
"""

import os
import signal

import pytest

from corpus.models import Dataset, Record, Response
from jobs.models import Job
from synth.generation import create_generation_job
from synth.models import CachedCompletion, GenerationJob, Provider
from tests.e2e.conftest import wait_for
from tests.synth.openai_loopback import LoopbackServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPTS = 40


def test_killed_generation_job_resumes_with_zero_repeated_calls(processes):
    dataset = Dataset.objects.create(name="resume")
    for i in range(PROMPTS):
        Record.objects.create(dataset=dataset, prompt=f"Question number {i}?")
    with LoopbackServer(delay=0.05, hold_after=PROMPTS // 2) as server:
        provider = Provider.objects.create(name="loopback", base_url=server.base_url, model="m", max_concurrency=4)
        generation = create_generation_job(method="responses", provider=provider, dataset=dataset,
                                           config={"samples_per_temperature": 1})
        first = processes.worker("worker-1")
        wait_for(lambda: CachedCompletion.objects.count() >= PROMPTS // 2, timeout=120,
                 what="half the requests to be answered and cached")
        wait_for(lambda: sum(1 for e in server.log if e.get("held")) >= 1, timeout=30, what="requests held")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        answered_before_kill = sum(server.answered.values())
        assert answered_before_kill == PROMPTS // 2
        server.release()

        processes.worker("worker-2")

        def finished():
            generation.job.refresh_from_db()
            return generation.job.is_finished

        wait_for(finished, timeout=120, what="the second worker to finish the job")
    job = generation.job
    assert job.status == Job.Status.SUCCEEDED, (job.error, processes.log("worker-2"))
    assert job.attempts == 2
    assert server.repeats() == 0, server.answered.most_common(3)
    assert len(server.answered) == PROMPTS
    generation = GenerationJob.objects.get(pk=generation.pk)
    assert generation.cache_hits == PROMPTS // 2
    responses = Response.objects.filter(record__dataset=dataset)
    assert responses.count() == PROMPTS
    assert len(set(responses.values_list("record_id", flat=True))) == PROMPTS  # one each, none twice


def test_cancelling_a_running_generation_job_stops_it_and_removes_its_output(processes):
    from jobs.runner import request_cancel

    dataset = Dataset.objects.create(name="cancel")
    for i in range(PROMPTS):
        Record.objects.create(dataset=dataset, prompt=f"Question number {i}?")
    with LoopbackServer(delay=0.3) as server:
        provider = Provider.objects.create(name="loopback", base_url=server.base_url, model="m", max_concurrency=2)
        generation = create_generation_job(method="responses", provider=provider, dataset=dataset,
                                           config={"samples_per_temperature": 1})
        processes.worker("worker")
        wait_for(lambda: Response.objects.filter(record__dataset=dataset).count() >= 4, timeout=120,
                 what="some responses to be written")
        request_cancel(generation.job)

        def finished():
            generation.job.refresh_from_db()
            return generation.job.is_finished

        wait_for(finished, timeout=60, what="the job to stop")
        calls_at_stop = server.calls
    assert generation.job.status == Job.Status.CANCELLED
    assert calls_at_stop < PROMPTS  # it stopped early
    assert Response.objects.filter(record__dataset=dataset).count() == 0  # its partial output is gone
