"""Every endpoint x every role: anonymous, a user without a role, annotator, manager, admin.

Annotators are assigned to no dataset here (assignments arrive with annotation projects), so
they see nothing and may change nothing; the scope hook test shows an assignment opening one.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Q

from corpus import access
from corpus.models import Dataset, Feedback, Record, Response
from jobs.models import Job

pytestmark = pytest.mark.django_db

# expected status per role: (anonymous, norole, annotator, manager, admin)
ROLES = ("anonymous", "norole", "annotator", "manager", "admin")


@pytest.fixture
def world(users):
    dataset = Dataset.objects.create(name="perm", owner=users["manager"])
    record = Record.objects.create(dataset=dataset, prompt="p")
    a = Response.objects.create(record=record, text="a", author_kind="human")
    b = Response.objects.create(record=record, text="b", author_kind="human")
    feedback = Feedback.objects.create(record=record, kind="pairwise", payload={"a": a.pk, "b": b.pk, "choice": "a"},
                                       author_kind="human")
    job = Job.objects.create(kind="corpus.import", params={})
    return {"dataset": dataset, "record": record, "a": a, "b": b, "feedback": feedback, "job": job}


def cases(w):
    d, r, a, b, f, j = w["dataset"].pk, w["record"].pk, w["a"].pk, w["b"].pk, w["feedback"].pk, w["job"].pk
    read_visible = (401, 403, 200, 200, 200)   # lists: annotators get an empty list
    read_hidden = (401, 403, 404, 200, 200)    # objects outside the annotator's scope
    manage_only = (401, 403, 403, 200, 200)
    return [
        ("get", "/api/v1/datasets", None, read_visible),
        ("post", "/api/v1/datasets", {"name": "new-{role}"}, (401, 403, 403, 201, 201)),
        ("get", f"/api/v1/datasets/{d}", None, read_hidden),
        ("patch", f"/api/v1/datasets/{d}", {"description": "x"}, manage_only),
        ("get", f"/api/v1/datasets/{d}/records", None, read_hidden),
        ("post", f"/api/v1/datasets/{d}/records", {"prompt": "q"}, (401, 403, 403, 201, 201)),
        ("get", f"/api/v1/records/{r}", None, read_hidden),
        ("patch", f"/api/v1/records/{r}", {"context": "c"}, manage_only),
        ("get", "/api/v1/responses", None, read_visible),
        ("get", f"/api/v1/responses/{a}", None, read_hidden),
        ("post", "/api/v1/responses", {"record": r, "text": "t"}, (401, 403, 403, 201, 201)),
        ("patch", f"/api/v1/responses/{a}", {"text": "t2"}, manage_only),
        ("get", "/api/v1/feedback", None, read_visible),
        ("get", f"/api/v1/feedback/{f}", None, read_hidden),
        ("post", "/api/v1/feedback", {"record": r, "kind": "binary", "payload": {"response": a, "label": True}},
         (401, 403, 403, 201, 201)),
        ("patch", f"/api/v1/feedback/{f}", {"payload": {"a": a, "b": b, "choice": "b"}}, manage_only),
        ("get", "/api/v1/jobs", None, manage_only),
        ("get", f"/api/v1/jobs/{j}", None, manage_only),
        ("post", f"/api/v1/jobs/{j}/cancel", None, manage_only),
    ]


@pytest.mark.parametrize("index", range(19))
def test_permission_matrix(clients, world, index):
    method, url, body, expected = cases(world)[index]
    for role, status in zip(ROLES, expected):
        payload = dict(body) if body else None
        if payload and "name" in payload:
            payload["name"] = payload["name"].format(role=role)
        response = getattr(clients[role], method)(url, payload, format="json")
        assert response.status_code == status, (role, method, url, response.content[:300])
        if status == 200 and method == "get" and role == "annotator" and "results" in response.json():
            assert response.json()["results"] == []


@pytest.mark.parametrize("role,status", [("anonymous", 401), ("norole", 403), ("annotator", 403),
                                         ("manager", 202), ("admin", 202)])
def test_import_permissions(clients, world, role, status):
    response = clients[role].post(
        f"/api/v1/datasets/{world['dataset'].pk}/import",
        {"file": SimpleUploadedFile("t.jsonl", b'{"text": "x"}\n')}, format="multipart",
    )
    assert response.status_code == status


@pytest.mark.parametrize("role,status", [("anonymous", 401), ("norole", 403), ("annotator", 403),
                                         ("manager", 204), ("admin", 204)])
def test_delete_permissions(clients, users, role, status):
    dataset = Dataset.objects.create(name=f"del-{role}")
    assert clients[role].delete(f"/api/v1/datasets/{dataset.pk}").status_code == status


def test_an_assigned_annotator_reads_but_cannot_write(clients, world, users):
    annotator = users["annotator"]

    def scope(user):
        return Q(name="perm") if user.pk == annotator.pk else Q(pk__in=[])

    access.register_dataset_scope(scope)
    try:
        client = clients["annotator"]
        assert [d["name"] for d in client.get("/api/v1/datasets").json()["results"]] == ["perm"]
        assert client.get(f"/api/v1/records/{world['record'].pk}").status_code == 200
        assert len(client.get("/api/v1/responses").json()["results"]) == 2
        assert client.patch(f"/api/v1/records/{world['record'].pk}", {"context": "x"}, format="json").status_code == 403
        other = Dataset.objects.create(name="secret")
        assert client.get(f"/api/v1/datasets/{other.pk}").status_code == 404
    finally:
        access._SCOPES.remove(scope)


def test_annotators_see_only_their_own_feedback(clients, world, users):
    """Other people's answers would anchor an annotator's, and gold or reviewer answers would
    give the key away: in their datasets annotators read only what they judged themselves."""
    annotator = users["annotator"]

    def scope(user):
        return Q(name="perm") if user.pk == annotator.pk else Q(pk__in=[])

    access.register_dataset_scope(scope)
    try:
        mine = Feedback.objects.create(record=world["record"], kind="binary", author_kind="human", author=annotator,
                                       payload={"response": world["a"].pk, "label": True})
        client = clients["annotator"]
        assert [f["id"] for f in client.get("/api/v1/feedback").json()["results"]] == [mine.pk]
        assert client.get(f"/api/v1/feedback/{mine.pk}").status_code == 200
        assert client.get(f"/api/v1/feedback/{world['feedback'].pk}").status_code == 404
        assert {f["id"] for f in clients["manager"].get("/api/v1/feedback").json()["results"]} == \
            {mine.pk, world["feedback"].pk}
    finally:
        access._SCOPES.remove(scope)


def test_session_login_works_for_the_web_ui(client, users):
    assert client.login(username="manager-user", password="pw-for-tests-1")
    assert client.get("/api/v1/datasets").status_code == 200
    # Session-authenticated writes need the CSRF token, as in the browser.
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.login(username="manager-user", password="pw-for-tests-1")
    assert strict.post("/api/v1/datasets", {"name": "x"}, content_type="application/json").status_code == 403
