"""Faults in the middle of work, with real processes and signals (issue 8).

The import, generation and training jobs have their own kill tests (test_worker_recovery,
test_synth_resume, tests/training/test_resume_e2e). Here: a worker SIGKILLed in the middle of a
curation run and of a snapshot build, the web server SIGKILLed in the middle of an annotation
session, the local model server SIGKILLed in the middle of a generation job, and PostgreSQL
restarted under running jobs. Afterwards every job has finished (or failed with its reason),
nothing is written twice, and nothing a client was told is saved is lost.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from annotate.models import AnnotationProject, Assignment, ProjectMember
from annotate.questions import normalise_questions
from annotate.setup import build_items, normalise_filter
from corpus.importing import KIND as IMPORT, ImportRequest
from corpus.models import AuthorKind, Dataset, Feedback, Record, Response, Snapshot
from corpus.snapshots.job import start_snapshot_build
from curate.models import CurationDecision, CurationRun
from curate.runs import start_run
from jobs.models import Job
from jobs.runner import create_job, run_job
from synth.generation import create_generation_job
from synth.models import Provider
from tests.conftest import write_jsonl
from tests.e2e.conftest import free_port, wait_for
from winnow.roles import grant_role

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


def finished(job: Job, timeout: float = 240, what: str = "the job to finish") -> Job:
    def done():
        job.refresh_from_db()
        return job.is_finished

    wait_for(done, timeout=timeout, every=0.2, what=what)
    return job


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def curation_data(name: str) -> Dataset:
    """300 records: 30 exact duplicates, 60 with an e-mail address, a few too short."""
    dataset = Dataset.objects.create(name=name)
    prompts = []
    for i in range(300):
        text = f"Question {i}: explain how topic number {i % 37} relates to everyday life, with an example."
        if i >= 270:
            text = prompts[i - 270]
        elif i % 5 == 0:
            text += f" Write to person{i}@example.com with the answer."
        elif i % 50 == 7:
            text = "Hi."
        prompts.append(text)
    Record.objects.bulk_create(Record(dataset=dataset, prompt=p, external_id=f"r{i}") for i, p in enumerate(prompts))
    return dataset


def report_counts(run: CurationRun) -> list:
    return [(step["step"], step["counts"], step["by_rule"]) for step in run.report["steps"]]


def test_worker_killed_mid_curation_run_resumes_at_the_step_it_was_in(processes):
    reference = start_run(curation_data("reference"), enqueue=False)
    assert run_job(reference.job_id).status == Job.Status.SUCCEEDED
    reference.refresh_from_db()

    dataset = curation_data("disturbed")
    run = start_run(dataset)  # autocommit: enqueued now
    first = processes.worker("worker-1")
    job = run.job
    # Quality, exact and near-dup have committed; PII (the slow step) is under way.
    wait_for(lambda: (job.refresh_from_db() or job.state.get("next_step", 0) >= 3), timeout=240, every=0.05,
             what="three steps to commit")
    kill(first)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.state["next_step"] < len(run.pipeline)  # cut off mid-run
    processes.worker("worker-2")
    finished(job)
    assert job.status == Job.Status.SUCCEEDED, (job.error, processes.log("worker-2"))
    assert job.attempts == 2
    run.refresh_from_db()
    assert run.status == CurationRun.Status.SUCCEEDED
    assert report_counts(run) == report_counts(reference)  # as if nothing had happened
    decisions = CurationDecision.objects.filter(run=run)
    assert decisions.count() == CurationDecision.objects.filter(run=reference).count()
    keys = list(decisions.values_list("step_index", "record_id", "response_id", "action"))
    assert len(keys) == len(set(keys))  # nothing decided twice
    dropped = Record.objects.filter(dataset=dataset, status="dropped").count()
    assert dropped == Record.objects.filter(dataset=reference.dataset, status="dropped").count() > 30


def preference_data(records: int) -> Dataset:
    dataset = Dataset.objects.create(name="prefs")
    made = Record.objects.bulk_create(Record(dataset=dataset, prompt=f"Prompt {i}?", external_id=f"p{i}")
                                      for i in range(records))
    responses = Response.objects.bulk_create(
        Response(record=r, text=f"{label} answer to {r.prompt}", author_kind=AuthorKind.MODEL, model_name="m")
        for r in made for label in ("good", "bad"))
    Feedback.objects.bulk_create(
        Feedback(record=r, kind="pairwise", author_kind=AuthorKind.HUMAN,
                 payload={"a": responses[2 * i].pk, "b": responses[2 * i + 1].pk, "choice": "a", "strength": "clear"})
        for i, r in enumerate(made))
    return dataset


def test_worker_killed_mid_snapshot_build_rebuilds_it_whole(processes):
    records = 40_000
    dataset = preference_data(records)
    snapshot = start_snapshot_build({"name": "prefs", "kind": "preference",
                                     "sources": {"datasets": [dataset.name]},
                                     "split": {"test_fraction": 0.1, "seed": 3}})
    job = snapshot.job
    # Built in two forked parts (the threshold lowered), so the kill also hits their processes.
    first = processes.worker("worker-1", env={"WINNOW_SNAPSHOT_PARALLEL_MIN_RECORDS": "1000"})
    parts = wait_for(lambda: len(found := psutil.Process(first.pid).children(recursive=True)) >= 2 and found,
                     timeout=240, every=0.01, what="the build's forked parts to be reading")
    first.kill()  # the worker alone, SIGKILL, mid-build: its forked parts must not outlive it
    first.wait(timeout=10)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in parts),
             timeout=30, what="the orphaned parts to die with their worker")
    processes.worker("worker-2")
    finished(job)
    assert job.status == Job.Status.SUCCEEDED, (job.error, processes.log("worker-2"))
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.READY
    assert snapshot.counts["train"] + snapshot.counts["test"] == records
    folder = Path(processes.env["WINNOW_DATA_DIR"]) / "snapshots" / str(snapshot.pk)  # the worker's
    lines = {name: (folder / f"{name}.jsonl").read_text().splitlines() for name in ("train", "test")}
    assert len(lines["train"]) + len(lines["test"]) == records
    assert len(set(lines["train"]) | set(lines["test"])) == records  # no row twice
    assert not folder.with_name(f"{snapshot.pk}.partial").exists()  # no staging left


@pytest.fixture
def web(processes):
    """`winnow run`'s web half: gunicorn on the test database (the worker is not needed)."""
    port = free_port()

    def start():
        proc = processes.start(sys.executable, "-m", "gunicorn", "winnow.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "2", log="web")
        processes.wait_serving(proc, f"http://127.0.0.1:{port}/login/", log="web", timeout=60)
        return proc

    return f"http://127.0.0.1:{port}", start


def test_web_server_killed_mid_annotation_session_loses_no_submission(web, django_user_model):
    base, start = web
    manager = django_user_model.objects.create_user("maria", password="a long test password")
    grant_role(manager, "manager")
    dataset = preference_data(30)
    project = AnnotationProject.objects.create(
        name="faults", dataset=dataset, questions=normalise_questions([{"name": "better", "kind": "pairwise"}]),
        record_filter=normalise_filter({}), overlap=1, created_by=manager)
    ProjectMember.objects.create(project=project, user=manager, role="manager")
    build_items(project)
    annotators = []
    for n in range(3):
        user = django_user_model.objects.create_user(f"ann{n}", password="a long test password")
        grant_role(user, "annotator")
        ProjectMember.objects.create(project=project, user=user, role="annotator")
        session = requests.Session()
        session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        annotators.append((user, session))
    api = f"{base}/api/v1/annotation-projects/{project.pk}"
    acknowledged: dict[int, set] = {user.pk: set() for user, _ in annotators}

    def work(user, session, items: int):
        """Claim and submit; a submission whose answer never came is sent again with the same
        client_key after the restart (what the workbench does), so it must not double up."""
        for _ in range(items):
            item = None
            while item is None:
                try:
                    reply = session.post(f"{api}/next", json={}, timeout=10)
                except requests.ConnectionError:
                    wait_for(lambda: _serving(base), timeout=60, what="the web server back")
                    continue
                if reply.status_code == 204:
                    return
                item = reply.json()["item"]
            body = {"item": item, "answers": {"better": {"choice": "a"}}, "client_key": f"{user.pk}-{item}"}
            while True:
                try:
                    reply = session.post(f"{api}/submit", json=body, timeout=10)
                except requests.ConnectionError:
                    wait_for(lambda: _serving(base), timeout=60, what="the web server back")
                    continue
                assert reply.status_code in (200, 201), reply.text
                acknowledged[user.pk].add(item)
                break

    server = start()
    for user, session in annotators:
        work(user, session, 4)
    kill(server)  # SIGKILL to gunicorn's whole process group, mid-session
    # Submissions sent while it is down fail to connect; nothing half-written remains.
    user, session = annotators[0]
    with pytest.raises(requests.ConnectionError):
        session.post(f"{api}/next", json={}, timeout=5)
    start()
    for user, session in annotators:
        work(user, session, 6)
    # A submission sent again (its answer lost in the crash, say) is recognised by its client_key.
    user, session = annotators[1]
    item = min(acknowledged[user.pk])
    again = session.post(f"{api}/submit", json={"item": item, "answers": {"better": {"choice": "a"}},
                                                "client_key": f"{user.pk}-{item}"}, timeout=10)
    assert again.status_code == 200 and again.json()["replayed"] is True
    for user, _ in annotators:
        saved = set(Assignment.objects.filter(project=project, annotator=user, status="submitted")
                    .values_list("item_id", flat=True))
        assert saved == acknowledged[user.pk] and len(saved) == 10
    feedback = Feedback.objects.filter(kind="pairwise", author_kind=AuthorKind.HUMAN,
                                       provenance__annotation_project=project.pk)
    assert feedback.count() == 30  # one per acknowledged submission, none twice


def _serving(base: str) -> bool:
    try:
        return requests.get(f"{base}/login/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


LOOPBACK_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.synth.openai_loopback import LoopbackServer
with LoopbackServer(delay=0.05, port={port}) as server:
    print("serving", server.base_url, flush=True)
    while True:
        time.sleep(1)
"""


def test_model_server_killed_mid_generation_job_recovers_when_it_is_back(processes, tmp_path):
    """The model server is a process of its own (here the scripted OpenAI-compatible server, in
    a subprocess so it can be SIGKILLed); the job retries with backoff and finishes once it is
    back, writing each response once."""
    port = free_port()
    script = tmp_path / "model_server.py"
    script.write_text(LOOPBACK_SERVER.format(root=str(ROOT), port=port))

    def start_model_server():
        proc = processes.start(sys.executable, str(script), log="model-server")
        wait_for(lambda: "serving" in processes.log("model-server"), timeout=30, what="the model server")
        return proc

    server = start_model_server()
    dataset = Dataset.objects.create(name="gen")
    Record.objects.bulk_create(Record(dataset=dataset, prompt=f"Question {i}: why is the sky blue?")
                               for i in range(60))
    provider = Provider.objects.create(name="local-sub", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                       max_concurrency=2, max_retries=8, timeout_seconds=5)
    generation = create_generation_job(method="responses", provider=provider, dataset=dataset,
                                       config={"samples_per_temperature": 1, "temperatures": [0.7]})
    job = generation.job
    processes.worker("worker")
    wait_for(lambda: Response.objects.filter(record__dataset=dataset).count() >= 10, timeout=120,
             what="some responses")
    kill(server)
    written_at_kill = Response.objects.filter(record__dataset=dataset).count()
    assert written_at_kill < 60
    server = start_model_server()
    finished(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    responses = Response.objects.filter(record__dataset=dataset)
    assert responses.count() == 60
    assert len(set(responses.values_list("record_id", flat=True))) == 60  # one each, none twice
    generation.refresh_from_db()
    assert generation.retries > 0 or job.attempts > 1


def _pg_cluster() -> tuple[str, str]:
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]
    return version, "main"


def test_postgresql_restart_under_running_jobs(processes, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("restarts the PostgreSQL server: runs in the PostgreSQL pass")
    if not (shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql")):
        pytest.skip("needs a local Debian PostgreSQL cluster to restart")
    rows = 30_000
    dataset = Dataset.objects.create(name="big")
    path = write_jsonl(tmp_path / "big.jsonl", ({"id": i, "text": f"document {i}"} for i in range(rows)))
    imported = create_job(IMPORT, params=ImportRequest(dataset_id=dataset.pk, path=str(path),
                                                       filename=path.name).as_params(),
                          subject=f"dataset:{dataset.pk}")
    curation = start_run(curation_data("to-curate"))
    small = {"WINNOW_IMPORT_BATCH_SIZE": "300"}
    processes.worker("worker-1", env=small)
    processes.worker("worker-2", env=small)
    wait_for(lambda: (imported.refresh_from_db() or 0 < (imported.state.get("line") or 0) < rows // 2),
             timeout=120, every=0.05, what="the import to be part-way")

    # Down for a few seconds (not just a quick restart), so the workers see refused connections.
    version, cluster = _pg_cluster()
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster]
    subprocess.run([*ctl, "stop", "-m", "fast"], check=True, timeout=120)
    try:
        time.sleep(4)
    finally:
        subprocess.run([*ctl, "start"], check=True, timeout=120)
    connection.close()  # this process's connection died with the server too
    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0, timeout=60,
             what="PostgreSQL back")

    for job in (imported, curation.job):
        finished(job, timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.kind, job.error, processes.log("worker-1"),
                                                    processes.log("worker-2"))
    assert imported.attempts == 2  # cut off by the outage, then resumed
    ids = list(Record.objects.filter(dataset=dataset).values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == rows
    assert all(proc.poll() is None for proc in processes.procs), "a worker died with the database"
    curation.refresh_from_db()
    assert curation.status == CurationRun.Status.SUCCEEDED
