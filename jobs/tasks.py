from winnow.tasks_api import task

from .runner import run_job


@task()
def execute_job(job_id: int) -> str | None:
    """The only task on the queue: run one attempt of a Job row (see jobs.runner)."""
    job = run_job(job_id)
    return job.status if job else None
