"""Load (issue 8): annotators, a generation job and a training run at once, on this machine.

gunicorn serves eight annotators (each claims an item, thinks 0.3 s, submits) first on a quiet
system, then for WINNOW_LOAD_SECONDS (default 600: ten minutes) while a worker runs a
generation job against a model server and a second worker trains the bundled SmolLM2 (LoRA SFT,
cancelled at the end). No request may fail, every acknowledged submission must be in the
database once, the generation job must write one response per prompt, and the training run must
log steps, checkpoint and stop cleanly. The annotation p50/p99 under load is printed beside the
quiet figure and saved in var/load-report.json.

PostgreSQL only: it is the database a loaded deployment runs on.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from annotate.models import AnnotationProject, Assignment, ProjectMember
from annotate.questions import normalise_questions
from annotate.setup import build_items, normalise_filter
from corpus.bundled_model import register_bundled_model
from corpus.models import AuthorKind, Dataset, Record, Response
from jobs.models import Job
from synth.generation import create_generation_job
from synth.models import Provider
from tests.e2e.conftest import ROOT, free_port, wait_for
from tests.training.factories import make_snapshot
from training.services import start_run
from winnow.roles import grant_role

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.load, pytest.mark.timeout(1800)]

LOAD_SECONDS = float(os.environ.get("WINNOW_LOAD_SECONDS", "600"))
QUIET_SECONDS = 30.0
ANNOTATORS = 8
THINK_SECONDS = 0.3
REPORT = ROOT / "var" / "load-report.json"

MODEL_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.synth.openai_loopback import LoopbackServer
with LoopbackServer(delay=0.2, port={port}) as server:
    print("serving", flush=True)
    while True:
        time.sleep(1)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Annotator(threading.Thread):
    def __init__(self, base: str, project: int, token: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.api = f"{base}/api/v1/annotation-projects/{project}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"
        self.stop = stop
        self.phase = "quiet"
        self.latency: dict[str, list[float]] = {"quiet": [], "load": []}
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.ran_out = False

    def timed(self, path: str, body: dict):
        started = time.perf_counter()
        reply = self.http.post(f"{self.api}/{path}", json=body, timeout=60)
        return reply, time.perf_counter() - started

    def run(self):
        while not self.stop.is_set():
            try:
                claimed, took_next = self.timed("next", {})
                if claimed.status_code == 204:
                    self.ran_out = True
                    return
                if claimed.status_code != 200:
                    self.errors.append(f"next {claimed.status_code}: {claimed.text[:200]}")
                    time.sleep(1)
                    continue
                item = claimed.json()["item"]
                time.sleep(THINK_SECONDS)
                done, took_submit = self.timed("submit", {"item": item, "answers": {"better": {"choice": "a"}},
                                                          "client_key": f"load-{item}"})
                if done.status_code not in (200, 201):
                    self.errors.append(f"submit {done.status_code}: {done.text[:200]}")
                    continue
                self.acknowledged.append(item)
                self.latency[self.phase].append(took_next + took_submit)
            except requests.RequestException as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(1)


def annotation_project(django_user_model, items: int):
    manager = django_user_model.objects.create_user("maria", password="a long test password")
    grant_role(manager, "manager")
    dataset = Dataset.objects.create(name="to-judge")
    records = Record.objects.bulk_create(Record(dataset=dataset, prompt=f"Question {i}?") for i in range(items))
    Response.objects.bulk_create(Response(record=r, text=f"{label} answer {r.pk}", author_kind=AuthorKind.MODEL)
                                 for r in records for label in ("short", "long"))
    project = AnnotationProject.objects.create(
        name="load", dataset=dataset, questions=normalise_questions([{"name": "better", "kind": "pairwise"}]),
        record_filter=normalise_filter({}), overlap=1, created_by=manager)
    ProjectMember.objects.create(project=project, user=manager, role="manager")
    build_items(project)
    tokens = []
    for n in range(ANNOTATORS):
        user = django_user_model.objects.create_user(f"ann{n}", password="a long test password")
        grant_role(user, "annotator")
        ProjectMember.objects.create(project=project, user=user, role="annotator")
        tokens.append(Token.objects.create(user=user).key)
    return project, manager, tokens


def test_annotators_generation_and_training_at_once(processes, django_user_model, tmp_path, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the load test runs in the PostgreSQL pass")
    settings.DATA_DIR = Path(processes.env["WINNOW_DATA_DIR"])  # snapshots where the workers look
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    capacity = int((QUIET_SECONDS + LOAD_SECONDS) / THINK_SECONDS * ANNOTATORS * 1.2) + 200
    project, manager, tokens = annotation_project(django_user_model, capacity)

    port = free_port()
    web = processes.start(sys.executable, "-m", "gunicorn", "winnow.wsgi:application", "--bind",
                          f"127.0.0.1:{port}", "--workers", "2", "--threads", "2", log="web",
                          env={"WINNOW_DB_CONN_MAX_AGE": "60", "WINNOW_LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{port}"
    processes.wait_serving(web, f"{base}/login/", log="web")

    stop = threading.Event()
    annotators = [Annotator(base, project.pk, token, stop) for token in tokens]
    for annotator in annotators:
        annotator.start()
    time.sleep(QUIET_SECONDS)
    for annotator in annotators:
        annotator.phase = "load"
    load_started = time.monotonic()

    # -- the load: a generation job and a training run ---------------------------------------
    model_port = free_port()
    script = tmp_path / "model_server.py"
    script.write_text(MODEL_SERVER.format(root=str(ROOT), port=model_port))
    processes.start(sys.executable, str(script), log="model-server")
    wait_for(lambda: "serving" in processes.log("model-server"), timeout=30, what="the model server")
    prompts = Dataset.objects.create(name="prompts")
    Record.objects.bulk_create(Record(dataset=prompts, prompt=f"Explain idea {i} simply.")
                               for i in range(int(LOAD_SECONDS * 8)))
    provider = Provider.objects.create(name="model-server", base_url=f"http://127.0.0.1:{model_port}/v1",
                                       model="m", max_concurrency=2)
    generation = create_generation_job(method="responses", provider=provider, dataset=prompts,
                                       config={"samples_per_temperature": 1, "temperatures": [0.7]})
    run = start_run(name="under load", method="sft", mode="lora", base_model=register_bundled_model(),
                    snapshot=make_snapshot("sft", train=64), created_by=manager,
                    config={"max_steps": 100_000, "save_steps": 10, "save_total_limit": 2, "max_length": 64,
                            "batch_size": 2, "evaluate": False, "generation_eval": False})
    processes.start(sys.executable, "manage.py", "worker", "--queue-name", "default", "--no-reload",
                    "--no-startup-delay", log="worker-default")
    processes.start(sys.executable, "manage.py", "worker", "--queue-name", "training", "--no-reload",
                    "--no-startup-delay", log="worker-training")

    # The clock starts once the trainer is stepping (loading the model takes a while under load).
    wait_for(lambda: (run.refresh_from_db() or run.step > 0), timeout=600, every=1,
             what="the training run's first step")
    started = time.monotonic()
    while time.monotonic() - started < LOAD_SECONDS:
        assert all(a.is_alive() or a.ran_out for a in annotators)
        time.sleep(5)
    stop.set()
    loaded_seconds = time.monotonic() - load_started  # the trainer's warm-up included
    for annotator in annotators:
        annotator.join(timeout=120)

    run.refresh_from_db()
    assert run.status == "running", (run.status, run.error, processes.log("worker-training"))
    manager_http = requests.Session()
    manager_http.headers["Authorization"] = f"Token {Token.objects.create(user=manager).key}"
    assert manager_http.post(f"{base}/api/v1/training-runs/{run.pk}/cancel", timeout=60).status_code == 202

    def run_stopped():
        run.refresh_from_db()
        return run.is_finished

    wait_for(run_stopped, timeout=300, what="the training run to checkpoint and stop")
    assert run.status == "cancelled" and run.checkpoints.exists(), run.error
    assert run.metrics.filter(split="train").count() > 0

    # -- nothing failed, nothing lost, nothing twice ----------------------------------------
    errors = [e for a in annotators for e in a.errors]
    assert not errors, errors[:5]
    acknowledged = [item for a in annotators for item in a.acknowledged]
    submitted = list(Assignment.objects.filter(project=project, status="submitted").values_list("item_id", flat=True))
    assert sorted(submitted) == sorted(acknowledged) and len(set(submitted)) == len(submitted)

    job = Job.objects.get(pk=generation.job_id)
    wait_for(lambda: (job.refresh_from_db() or job.is_finished), timeout=900, what="the generation job")
    assert job.status == Job.Status.SUCCEEDED, job.error
    per_prompt = Response.objects.filter(record__dataset=prompts).values_list("record_id", flat=True)
    assert len(per_prompt) == len(set(per_prompt)) == prompts.records.count()

    quiet = [t for a in annotators for t in a.latency["quiet"]]
    loaded = [t for a in annotators for t in a.latency["load"]]
    report = {
        "annotators": ANNOTATORS, "think_seconds": THINK_SECONDS, "load_seconds": round(loaded_seconds),
        "cycles": {"quiet": len(quiet), "load": len(loaded)},
        "cycles_per_second": {"quiet": round(len(quiet) / QUIET_SECONDS, 1),
                              "load": round(len(loaded) / loaded_seconds, 1)},
        "cycle_p50_ms": {"quiet": round(percentile(quiet, 0.5) * 1000), "load": round(percentile(loaded, 0.5) * 1000)},
        "cycle_p99_ms": {"quiet": round(percentile(quiet, 0.99) * 1000), "load": round(percentile(loaded, 0.99) * 1000)},
        "generation": {"responses": len(per_prompt), "seconds": round((job.finished_at - job.started_at).total_seconds())},
        "training": {"steps": run.step, "checkpoints": run.checkpoints.count()},
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print("\nload report:", json.dumps(report))
    assert len(quiet) > 0 and len(loaded) > 0
