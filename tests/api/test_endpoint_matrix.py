"""Every operation of the REST API x every kind of caller, from one declared table.

The operations are the project's own OpenAPI schema (drf-spectacular): every path x
get/post/put/patch/delete. EXPECTED below says, for each (METHOD, path template), who may call
it and who is answered 404 because the object is hidden from them; every other signed-in
caller must get 403. `test_the_table_lists_exactly_the_schemas_operations` fails when the
schema gains an operation the table does not declare (or loses one it does), so a new
endpoint cannot ship without a declared permission.

The callers are those of tests/annotate/test_permissions.py: anonymous, a signed-in user with
no role ("norole"), an annotator of another project on another dataset ("other"), the
project's annotator and reviewer (both global annotators), a manager and an admin. Each
(operation, caller) pair sends one real request through APIClient with token auth, its path
filled with the ids of objects made in `world`, and a plausible body:

- anonymous -> 401, norole -> 403 (everywhere);
- a caller not allowed -> 403, or 404 "Not found." where the table says the object is
  hidden from them (annotators see only the datasets of their projects: corpus.access);
  and a refused request leaves every row of the apps' tables as it was;
- an allowed caller -> anything below 500 except 401, 403 and the hidden-404; a 400 for a
  body the endpoint rejects is fine (bodies that would start a model server or a training run
  deliberately name nothing that exists);
- on the lists annotators may read, annotators see exactly their scope and managers all of it.

Fast by construction: no worker runs (jobs are enqueued on commit, and the test's transaction
never commits), no model is loaded, and the one provider points at a closed loopback port so
its health check and "try it" fail at once instead of reaching out.

The per-app tests (tests/api/test_permissions.py, tests/annotate/test_permissions.py, the
snapshot, curation, synth and training API tests) check the details; this one checks that
nothing is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from corpus.models import Dataset, Feedback, RegisteredModel
from curate.models import CurationDecision, CurationRun, PIIFinding
from jobs.models import Job
from synth.generation import create_generation_job
from synth.models import Provider
from tests.annotate.conftest import QUESTIONS, make_project, make_records
from tests.conftest import token_client
from tests.training.factories import make_snapshot
from training.models import TrainingRun
from winnow.roles import grant_role

SCHEMA_METHODS = ("get", "post", "put", "patch", "delete")
CALLERS = ("anonymous", "norole", "other", "annotator", "reviewer", "manager", "admin")
HIDDEN_DETAIL = "Not found."  # what DRF's NotFound says; the app's own 404s say more

# Who is who. "manager" is also the project's creator (a project manager member); "admin" is a
# superuser and no member of anything.
MANAGERS = frozenset({"manager", "admin"})
ANY_ROLE = frozenset({"other", "annotator", "reviewer"}) | MANAGERS
# The project's dataset is readable by the project's members and by managers (corpus.access);
# "other" belongs to a project on another dataset, so objects here are hidden from them.
DATASET_READERS = frozenset({"annotator", "reviewer"}) | MANAGERS
OUTSIDE_THE_DATASET = frozenset({"other"})
# annotate.api levels. READ: any project member, or a global manager/admin.
PROJECT_READERS = frozenset({"annotator", "reviewer"}) | MANAGERS
# WORK (the queue) needs a membership row: the admin, a member of nothing, is refused.
PROJECT_WORKERS = frozenset({"annotator", "reviewer", "manager"})
PROJECT_REVIEWERS = frozenset({"reviewer"}) | MANAGERS
PROJECT_MANAGERS = MANAGERS
OUTSIDE_THE_PROJECT = frozenset({"other"})  # the queryset hides the project: 404


@dataclass
class World:
    """The objects the requests name, and who can see which of them."""

    people: dict
    dataset: Dataset
    elsewhere_dataset: Dataset
    records: list
    responses: list
    feedback: Feedback
    elsewhere_feedback: Feedback
    project: object
    elsewhere_project: object
    item: object
    job: Job
    run: CurationRun
    elsewhere_run: CurationRun
    finding: PIIFinding
    snapshot: object
    model: RegisteredModel
    training_run: TrainingRun
    provider: Provider
    generation: object
    # list name -> (ids the project's members see, ids "other" sees)
    scopes: dict = field(default_factory=dict)

    def id_of(self, collection: str) -> int:
        """The object a path's {id} names, by the path's first segment."""
        return {
            "annotation-projects": self.project.pk, "curation-runs": self.run.pk,
            "datasets": self.dataset.pk, "feedback": self.feedback.pk,
            "generation-jobs": self.generation.pk, "jobs": self.job.pk, "models": self.model.pk,
            "pii-findings": self.finding.pk, "providers": self.provider.pk,
            "records": self.records[0].pk, "responses": self.responses[0].pk,
            "snapshots": self.snapshot.pk, "training-runs": self.training_run.pk,
        }[collection]

    def url(self, template: str) -> str:
        collection = template.split("/")[3]
        return template.format(
            id=self.id_of(collection) if "{id}" in template else None,
            dataset_id=self.dataset.pk, item_id=self.item.pk,
            user_id=self.people["annotator"].pk, name="train.jsonl",
        )

    def client(self, caller: str) -> APIClient:
        # Only the caller's token is made: the other five would cost time and prove nothing.
        return APIClient() if caller == "anonymous" else token_client(self.people[caller])


@dataclass(frozen=True)
class Op:
    """The declared permission of one operation."""

    allowed: frozenset
    hidden: frozenset = frozenset()  # refused callers who get 404: the object is out of sight
    body: Callable[[World], object] | None = None
    format: str = "json"
    lists: str | None = None  # a list whose scope is checked: a key of World.scopes


def manager_only(body=None, **kwargs) -> Op:
    return Op(MANAGERS, body=body, **kwargs)


def dataset_read(**kwargs) -> Op:
    return Op(DATASET_READERS, hidden=OUTSIDE_THE_DATASET, **kwargs)


def project_level(allowed, body=None) -> Op:
    return Op(allowed, hidden=OUTSIDE_THE_PROJECT, body=body)


def item_ref(w: World) -> dict:
    return {"item": w.item.pk}


def pairwise_answer(w: World) -> dict:
    return {"item": w.item.pk, "answers": {"better": {"choice": "a"}}}


def pairwise_payload(w: World) -> dict:
    return {"a": w.responses[0].pk, "b": w.responses[1].pk, "choice": "b"}


def import_upload(w: World) -> dict:
    # A fresh upload per request: the file object is consumed by the one that reads it.
    return {"file": SimpleUploadedFile("rows.jsonl", b'{"prompt": "p", "response": "r"}\n')}


CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # nothing listens: connection refused at once

A = "/api/v1"
EXPECTED: dict[tuple[str, str], Op] = {
    # -- annotation projects (annotate/api.py ProjectPermission, ACTION_LEVELS) ---------------
    ("GET", f"{A}/annotation-projects"): Op(ANY_ROLE, lists="projects"),
    ("POST", f"{A}/annotation-projects"): manager_only(lambda w: {
        "name": "new project", "dataset": w.dataset.pk, "questions": [{"kind": "binary"}]}),
    ("GET", f"{A}/annotation-projects/{{id}}"): project_level(PROJECT_READERS),
    ("PUT", f"{A}/annotation-projects/{{id}}"): project_level(PROJECT_MANAGERS, lambda w: {
        "name": "renamed", "dataset": w.dataset.pk, "questions": [QUESTIONS["pairwise"]]}),
    ("PATCH", f"{A}/annotation-projects/{{id}}"): project_level(
        PROJECT_MANAGERS, lambda w: {"description": "new"}),
    ("DELETE", f"{A}/annotation-projects/{{id}}"): project_level(PROJECT_MANAGERS),
    ("GET", f"{A}/annotation-projects/{{id}}/agreement"): project_level(PROJECT_REVIEWERS),
    ("GET", f"{A}/annotation-projects/{{id}}/gold"): project_level(PROJECT_MANAGERS),
    ("POST", f"{A}/annotation-projects/{{id}}/gold"): project_level(PROJECT_MANAGERS, pairwise_answer),
    ("GET", f"{A}/annotation-projects/{{id}}/items/{{item_id}}"): project_level(PROJECT_REVIEWERS),
    ("GET", f"{A}/annotation-projects/{{id}}/members"): project_level(PROJECT_MANAGERS),
    ("POST", f"{A}/annotation-projects/{{id}}/members"): project_level(
        PROJECT_MANAGERS, lambda w: {"username": w.people["other"].username, "role": "annotator"}),
    ("DELETE", f"{A}/annotation-projects/{{id}}/members/{{user_id}}"): project_level(PROJECT_MANAGERS),
    ("POST", f"{A}/annotation-projects/{{id}}/members/{{user_id}}/exclude"): project_level(
        PROJECT_MANAGERS, lambda w: {"excluded": True}),
    ("POST", f"{A}/annotation-projects/{{id}}/next"): project_level(PROJECT_WORKERS, lambda w: {}),
    ("GET", f"{A}/annotation-projects/{{id}}/progress"): project_level(PROJECT_READERS),
    ("POST", f"{A}/annotation-projects/{{id}}/release"): project_level(PROJECT_WORKERS, item_ref),
    ("GET", f"{A}/annotation-projects/{{id}}/review"): project_level(PROJECT_REVIEWERS),
    ("POST", f"{A}/annotation-projects/{{id}}/review"): project_level(PROJECT_REVIEWERS, lambda w: {
        "item": w.item.pk, "question": "better", "answer": {"choice": "a"}}),
    ("POST", f"{A}/annotation-projects/{{id}}/skip"): project_level(PROJECT_WORKERS, item_ref),
    ("POST", f"{A}/annotation-projects/{{id}}/submit"): project_level(PROJECT_WORKERS, pairwise_answer),
    ("POST", f"{A}/annotation-projects/{{id}}/undo"): project_level(PROJECT_WORKERS),
    # -- curation runs: ManagerOrReadOnly over the caller's datasets; PII queue: managers ----
    ("GET", f"{A}/curation-runs"): Op(ANY_ROLE, lists="curation_runs"),
    ("POST", f"{A}/curation-runs"): manager_only(lambda w: {
        "dataset": w.dataset.pk, "pipeline": [{"step": "exact_dedup"}]}),
    ("GET", f"{A}/curation-runs/{{id}}"): dataset_read(),
    ("GET", f"{A}/curation-runs/{{id}}/decisions"): dataset_read(),
    ("POST", f"{A}/curation-runs/{{id}}/revert"): manager_only(),
    ("GET", f"{A}/pii-findings"): manager_only(),
    ("GET", f"{A}/pii-findings/{{id}}"): manager_only(),
    ("POST", f"{A}/pii-findings/{{id}}/review"): manager_only(lambda w: {"decision": "approve"}),
    # -- corpus: ManagerOrReadOnly; reads are scoped by corpus.access ------------------------
    ("GET", f"{A}/datasets"): Op(ANY_ROLE, lists="datasets"),
    ("POST", f"{A}/datasets"): manager_only(lambda w: {"name": "new dataset"}),
    ("GET", f"{A}/datasets/{{dataset_id}}/records"): dataset_read(),
    ("POST", f"{A}/datasets/{{dataset_id}}/records"): manager_only(lambda w: {
        "prompt": "q", "responses": [{"text": "a", "author_kind": "model", "model_name": "m"}]}),
    ("GET", f"{A}/datasets/{{id}}"): dataset_read(),
    ("PUT", f"{A}/datasets/{{id}}"): manager_only(lambda w: {"name": "renamed", "description": "d"}),
    ("PATCH", f"{A}/datasets/{{id}}"): manager_only(lambda w: {"description": "x"}),
    ("DELETE", f"{A}/datasets/{{id}}"): manager_only(),
    ("POST", f"{A}/datasets/{{id}}/import"): manager_only(import_upload, format="multipart"),
    ("GET", f"{A}/records/{{id}}"): dataset_read(),
    ("PUT", f"{A}/records/{{id}}"): manager_only(lambda w: {"prompt": "rewritten"}),
    ("PATCH", f"{A}/records/{{id}}"): manager_only(lambda w: {"status": "dropped",
                                                             "status_reason": "off topic"}),
    ("DELETE", f"{A}/records/{{id}}"): manager_only(),
    ("GET", f"{A}/responses"): Op(ANY_ROLE, lists="responses"),
    ("POST", f"{A}/responses"): manager_only(lambda w: {
        "record": w.records[0].pk, "text": "t", "author_kind": "model", "model_name": "m"}),
    ("GET", f"{A}/responses/{{id}}"): dataset_read(),
    ("PUT", f"{A}/responses/{{id}}"): manager_only(lambda w: {
        "text": "t2", "author_kind": "model", "model_name": "m"}),
    ("PATCH", f"{A}/responses/{{id}}"): manager_only(lambda w: {"text": "t3"}),
    ("DELETE", f"{A}/responses/{{id}}"): manager_only(),
    ("GET", f"{A}/feedback"): Op(ANY_ROLE, lists="feedback"),
    ("POST", f"{A}/feedback"): manager_only(lambda w: {
        "record": w.records[0].pk, "kind": "binary",
        "payload": {"response": w.responses[0].pk, "label": True}}),
    # Annotators see only their own judgements (corpus.access): the reviewer, a member of the
    # same project, is shown nothing of the annotator's.
    ("GET", f"{A}/feedback/{{id}}"): Op(MANAGERS | {"annotator"}, hidden=OUTSIDE_THE_DATASET | {"reviewer"}),
    ("PUT", f"{A}/feedback/{{id}}"): manager_only(lambda w: {
        "kind": "pairwise", "payload": pairwise_payload(w)}),
    ("PATCH", f"{A}/feedback/{{id}}"): manager_only(lambda w: {"payload": pairwise_payload(w)}),
    ("DELETE", f"{A}/feedback/{{id}}"): manager_only(),
    ("GET", f"{A}/snapshots"): manager_only(),
    ("POST", f"{A}/snapshots"): manager_only(lambda w: {"recipe": {
        "kind": "preference", "sources": {"datasets": [w.dataset.name]}}}),
    ("GET", f"{A}/snapshots/{{id}}"): manager_only(),
    ("GET", f"{A}/snapshots/{{id}}/files/{{name}}"): manager_only(),
    # -- jobs: managers ---------------------------------------------------------------------
    ("GET", f"{A}/jobs"): manager_only(),
    ("GET", f"{A}/jobs/{{id}}"): manager_only(),
    ("POST", f"{A}/jobs/{{id}}/cancel"): manager_only(),
    # -- synth: managers --------------------------------------------------------------------
    ("GET", f"{A}/generation-jobs"): manager_only(),
    ("POST", f"{A}/generation-jobs"): manager_only(lambda w: {
        "method": "responses", "provider": w.provider.pk, "dataset": w.dataset.pk, "config": {}}),
    ("GET", f"{A}/generation-jobs/{{id}}"): manager_only(),
    ("POST", f"{A}/generation-jobs/{{id}}/cancel"): manager_only(),
    ("GET", f"{A}/generation-jobs/{{id}}/discards"): manager_only(),
    ("GET", f"{A}/generation-methods"): manager_only(),
    ("GET", f"{A}/providers"): manager_only(),
    ("POST", f"{A}/providers"): manager_only(lambda w: {
        "name": "another", "base_url": CLOSED_PORT_URL, "model": "m"}),
    ("GET", f"{A}/providers/{{id}}"): manager_only(),
    ("PUT", f"{A}/providers/{{id}}"): manager_only(lambda w: {
        "name": "closed-port", "base_url": CLOSED_PORT_URL, "model": "m2"}),
    ("PATCH", f"{A}/providers/{{id}}"): manager_only(lambda w: {"max_concurrency": 2}),
    # Refused with a 400 for the allowed: a generation job keeps the provider (PROTECT).
    ("DELETE", f"{A}/providers/{{id}}"): manager_only(),
    ("GET", f"{A}/providers/{{id}}/health"): manager_only(),
    ("POST", f"{A}/providers/{{id}}/health"): manager_only(),
    ("POST", f"{A}/providers/{{id}}/try"): manager_only(lambda w: {"prompt": "Say hi", "max_tokens": 4}),
    # Names no registered model, so no server is started.
    ("POST", f"{A}/providers/serve-model"): manager_only(lambda w: {"model": "no-such-model"}),
    # -- training: managers -----------------------------------------------------------------
    ("GET", f"{A}/models"): manager_only(),
    # A folder that does not exist: a 400 before anything is loaded.
    ("POST", f"{A}/models"): manager_only(lambda w: {"name": "mine", "path": "/nonexistent/model"}),
    ("GET", f"{A}/models/{{id}}"): manager_only(),
    ("GET", f"{A}/training-runs"): manager_only(),
    # A base model that does not exist: a 400 before any validation loads it, no run starts.
    ("POST", f"{A}/training-runs"): manager_only(lambda w: {
        "method": "dpo", "base_model": 999_999, "snapshot": w.snapshot.pk}),
    ("GET", f"{A}/training-runs/{{id}}"): manager_only(),
    ("GET", f"{A}/training-runs/{{id}}/artifacts"): manager_only(),
    ("POST", f"{A}/training-runs/{{id}}/cancel"): manager_only(),
    ("GET", f"{A}/training-runs/{{id}}/logs"): manager_only(),
    ("GET", f"{A}/training-runs/{{id}}/metrics"): manager_only(),
    # The run is queued, so resuming it is a 400.
    ("POST", f"{A}/training-runs/{{id}}/resume"): manager_only(),
}


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path) for path, item in schema["paths"].items()
            for method in SCHEMA_METHODS if method in item}


def test_the_table_lists_exactly_the_schemas_operations():
    in_schema = schema_operations()
    undeclared = sorted(in_schema - set(EXPECTED))
    gone = sorted(set(EXPECTED) - in_schema)
    assert not undeclared, f"declare who may call these in EXPECTED: {undeclared}"
    assert not gone, f"these are no longer in the API; remove them from EXPECTED: {gone}"


@pytest.mark.parametrize("operation", sorted(EXPECTED), ids=" ".join)
def test_the_table_is_coherent(operation):
    op = EXPECTED[operation]
    assert op.allowed <= ANY_ROLE, "anonymous and norole are never allowed"
    assert op.hidden <= ANY_ROLE - op.allowed, "only a refused caller is answered 404"
    assert op.lists is None or (operation[0] == "GET" and "{" not in operation[1])


# -- the world ----------------------------------------------------------------------------


def make_world(users, django_user_model, tmp_path) -> World:
    people = {"norole": users["norole"], "annotator": users["annotator"],
              "manager": users["manager"], "admin": users["admin"]}
    for name in ("other", "reviewer"):
        people[name] = django_user_model.objects.create_user(username=f"{name}-user",
                                                             password="pw-for-tests-1")
        grant_role(people[name], "annotator")

    dataset = Dataset.objects.create(name="matrix-here", owner=users["manager"])
    records = make_records(dataset, 2, responses=2)
    responses = [r for record in records for r in record.responses.order_by("id")]
    elsewhere_dataset = Dataset.objects.create(name="matrix-elsewhere", owner=users["manager"])
    elsewhere_records = make_records(elsewhere_dataset, 1, responses=2)
    elsewhere_responses = list(elsewhere_records[0].responses.order_by("id"))

    def pairwise(record, a, b, author):
        return Feedback.objects.create(record=record, kind="pairwise", author_kind="human", author=author,
                                       payload={"a": a.pk, "b": b.pk, "choice": "a"})

    feedback = pairwise(records[0], responses[0], responses[1], people["annotator"])
    elsewhere_feedback = pairwise(elsewhere_records[0], *elsewhere_responses, people["other"])

    project = make_project(dataset, users["manager"], ("pairwise",), name="matrix-project",
                           members=[(people["annotator"], "annotator"), (people["reviewer"], "reviewer")])
    elsewhere_project = make_project(elsewhere_dataset, users["manager"], ("binary",), name="elsewhere",
                                     members=[(people["other"], "annotator")])

    # A finished PII run that redacted the first record's prompt, with its pending finding,
    # as curate.steps_pii leaves them (so review and revert work on consistent rows).
    email = "ann@example.com"
    original = f"Mail {email} about it"
    run = CurationRun.objects.create(dataset=dataset, pipeline=[{"step": "pii", "config": {}}],
                                     status=CurationRun.Status.SUCCEEDED, report={"steps": []})
    decision = CurationDecision.objects.create(
        run=run, step_index=0, step="pii", record=records[0], action="redacted", rule="pii:EMAIL",
        reason="PII: EMAIL in prompt", field="prompt", previous_text=original,
        previous_status=records[0].status)
    records[0].prompt = original.replace(email, "<EMAIL>")
    records[0].save(update_fields=["prompt"])
    start = original.index(email)
    finding = PIIFinding.objects.create(
        run=run, decision=decision, record=records[0], field="prompt", entity_type="EMAIL",
        start=start, end=start + len(email), score=0.99, original=email, policy="redact",
        replacement="<EMAIL>")
    elsewhere_run = CurationRun.objects.create(dataset=elsewhere_dataset, pipeline=[],
                                               status=CurationRun.Status.SUCCEEDED)

    snapshot = make_snapshot("preference")  # ready, with its files under DATA_DIR
    model = RegisteredModel.objects.create(name="matrix-model", origin=RegisteredModel.Origin.LOCAL,
                                           path=str(tmp_path))
    training_run = TrainingRun.objects.create(method="dpo", base_model=model, snapshot=snapshot)
    provider = Provider.objects.create(name="closed-port", base_url=CLOSED_PORT_URL, model="m",
                                       max_retries=0, timeout_seconds=2)
    generation = create_generation_job(method="responses", provider=provider, dataset=dataset,
                                       enqueue=False)

    return World(
        people=people, dataset=dataset, elsewhere_dataset=elsewhere_dataset,
        records=records, responses=responses, feedback=feedback,
        elsewhere_feedback=elsewhere_feedback, project=project,
        elsewhere_project=elsewhere_project, item=project.items.order_by("id").first(),
        job=Job.objects.create(kind="corpus.import", params={}), run=run,
        elsewhere_run=elsewhere_run, finding=finding, snapshot=snapshot, model=model,
        training_run=training_run, provider=provider, generation=generation,
        scopes={
            "datasets": ({dataset.pk}, {elsewhere_dataset.pk}),
            "responses": ({r.pk for r in responses}, {r.pk for r in elsewhere_responses}),
            "feedback": ({feedback.pk}, {elsewhere_feedback.pk}),
            "curation_runs": ({run.pk}, {elsewhere_run.pk}),
            "projects": ({project.pk}, {elsewhere_project.pk}),
        },
    )


@pytest.fixture
def world(users, django_user_model, settings, tmp_path):
    # Snapshot files and training-run folders of this test only.
    settings.DATA_DIR = tmp_path / "data"
    return make_world(users, django_user_model, tmp_path)


# -- the matrix ---------------------------------------------------------------------------


# Everything a refused request could have written to. Tokens and users are left out: the
# caller's token is made before the request and nothing in the API writes either.
STATE_APPS = ("corpus", "annotate", "curate", "synth", "training", "jobs")


def database_state() -> dict:
    """Every row of the apps' tables (the world is a few dozen rows, so this is cheap)."""
    return {model._meta.label: list(model.objects.order_by("pk").values_list())
            for label in STATE_APPS for model in apps.get_app_config(label).get_models()}


def detail_of(response) -> str | None:
    if response.streaming or not response.get("Content-Type", "").startswith("application/json"):
        return None
    if not response.content:
        return None
    body = response.json()
    return body.get("detail") if isinstance(body, dict) else None


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", sorted(EXPECTED), ids=" ".join)
def test_operation_answers_caller_as_declared(world, operation, caller):
    method, template = operation
    op = EXPECTED[operation]
    url = world.url(template)
    body = op.body(world) if op.body else None
    client = world.client(caller)
    refused = caller not in op.allowed
    before = database_state() if refused else None
    response = getattr(client, method.lower())(url, body, format=op.format)
    if response.streaming:
        # Read a download to its end: that closes its file the way the test client expects
        # (response.close() would also close the test's database connection).
        b"".join(response.streaming_content)
    status, detail = response.status_code, detail_of(response)
    said = (status, detail if detail is not None else response.get("Content-Type"))
    is_hidden_404 = status == 404 and detail == HIDDEN_DETAIL

    if caller == "anonymous":
        assert status == 401, said
    elif caller in op.allowed:
        assert status not in (401, 403) and not is_hidden_404, said
        assert status < 500, said
    elif caller in op.hidden:
        assert is_hidden_404, said
    else:
        assert status == 403, said
    if refused:
        # Refused means refused before doing anything, not after.
        assert database_state() == before, "a refused request changed the database"

    if op.lists and caller in op.allowed:
        listed = {row["id"] for row in response.json()["results"]}
        here, elsewhere = world.scopes[op.lists]
        if caller == "other":
            assert listed == elsewhere
        elif caller == "reviewer" and op.lists == "feedback":
            assert listed == set()  # the annotator's judgement is theirs alone
        elif caller in ("annotator", "reviewer"):
            assert listed == here
        else:
            assert listed >= here | elsewhere
