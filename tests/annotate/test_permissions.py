"""Every annotation endpoint x every kind of caller: anonymous, a user with no role, an
annotator of another project, the project's annotator and reviewer, a manager, an admin."""

import pytest

from annotate.models import AnnotationProject, Item, ProjectMember
from tests.conftest import token_client
from winnow.roles import grant_role

from .conftest import make_project

CALLERS = ("anonymous", "norole", "other", "annotator", "reviewer", "manager", "admin")
MEMBERS = {"annotator", "reviewer", "manager"}
MANAGERS = {"manager", "admin"}
READERS = MEMBERS | {"admin"}
REVIEWERS = {"reviewer", "manager", "admin"}
HIDDEN = "Not found."

# (name, method, path under the project (None: the collection), body, who may)
ENDPOINTS = [
    ("list", "get", None, None, {"other"} | READERS),
    ("create", "post", None, "create", MANAGERS),
    ("retrieve", "get", "", None, READERS),
    ("update", "patch", "", {"description": "new"}, MANAGERS),
    ("destroy", "delete", "", None, MANAGERS),
    ("next", "post", "next", {}, MEMBERS),
    ("submit", "post", "submit", {"item": "ITEM", "answers": {}}, MEMBERS),
    ("skip", "post", "skip", {"item": "ITEM"}, MEMBERS),
    ("release", "post", "release", {"item": "ITEM"}, MEMBERS),
    ("undo", "post", "undo", None, MEMBERS),
    ("progress", "get", "progress", None, READERS),
    ("agreement", "get", "agreement", None, REVIEWERS),
    ("review-list", "get", "review", None, REVIEWERS),
    ("review-set", "post", "review", {"item": "ITEM", "question": "better", "answer": {"choice": "a"}}, REVIEWERS),
    ("item", "get", "items/ITEM", None, REVIEWERS),
    ("members-list", "get", "members", None, MANAGERS),
    ("members-add", "post", "members", {"username": "other", "role": "annotator"}, MANAGERS),
    ("member-remove", "delete", "members/ANNOTATOR", None, MANAGERS),
    ("exclude", "post", "members/ANNOTATOR/exclude", {}, MANAGERS),
    ("gold-accuracy", "get", "gold", None, MANAGERS),
    ("gold-set", "post", "gold", {"item": "ITEM", "answers": {"better": {"choice": "a"}}}, MANAGERS),
]


@pytest.fixture
def world(users, corpus_dataset, django_user_model):
    people = {"norole": users["norole"], "manager": users["manager"], "admin": users["admin"]}
    for name in ("other", "annotator", "reviewer"):
        people[name] = django_user_model.objects.create_user(username=name, password="pw-for-tests-1")
        grant_role(people[name], "annotator")
    project = make_project(corpus_dataset, users["manager"], ("pairwise",),
                           members=[(people["annotator"], "annotator"), (people["reviewer"], "reviewer")])
    elsewhere = make_project(corpus_dataset, users["manager"], ("binary",), name="elsewhere",
                             members=[(people["other"], "annotator")])
    clients = {name: token_client(user) for name, user in people.items()}
    from rest_framework.test import APIClient

    clients["anonymous"] = APIClient()
    return project, elsewhere, people, clients


def fill(value, project, people):
    item = str(Item.objects.filter(project=project).first().pk)
    if isinstance(value, str):
        return value.replace("ITEM", item).replace("ANNOTATOR", str(people["annotator"].pk))
    if isinstance(value, dict):
        return {k: int(fill(v, project, people)) if v == "ITEM" else fill(v, project, people) for k, v in value.items()}
    return value


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name,method,path,body,allowed", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_permission_matrix(world, caller, name, method, path, body, allowed):
    project, elsewhere, people, clients = world
    if path is None:
        url = "/api/v1/annotation-projects"
    else:
        url = f"/api/v1/annotation-projects/{project.pk}/{fill(path, project, people)}".rstrip("/")
    if body == "create":
        body = {"name": f"new-{caller}", "dataset": project.dataset_id, "questions": [{"kind": "binary"}]}
    response = getattr(clients[caller], method)(url, fill(body, project, people), format="json")
    status = response.status_code
    denied = status in (401, 403) or (status == 404 and response.json().get("detail") == HIDDEN)
    if caller == "anonymous":
        assert status == 401
    elif caller in allowed:
        assert not denied, (status, response.content)
        assert status < 500
    else:
        assert denied, (status, response.content)
        if caller == "other" and path is not None:
            assert status == 404  # another project's annotator cannot even see this one
    if name == "list" and caller in allowed:
        names = {p["name"] for p in response.json()["results"]}
        expected = {"other": {"elsewhere"}, "annotator": {project.name}, "reviewer": {project.name}}
        assert names == expected.get(caller, {project.name, "elsewhere"})


def test_annotators_read_only_their_projects_datasets(world):
    project, elsewhere, people, clients = world
    assert clients["annotator"].get(f"/api/v1/datasets/{project.dataset_id}").status_code == 200
    assert clients["norole"].get(f"/api/v1/datasets/{project.dataset_id}").status_code == 403
    assert clients["annotator"].patch(f"/api/v1/datasets/{project.dataset_id}", {"name": "x"},
                                      format="json").status_code == 403


def test_a_project_manager_member_steers_only_their_project(world, django_user_model):
    project, elsewhere, people, clients = world
    lead = django_user_model.objects.create_user(username="lead", password="pw-for-tests-1")
    grant_role(lead, "annotator")
    ProjectMember.objects.create(project=project, user=lead, role="manager")
    lead_client = token_client(lead)
    assert lead_client.get(f"/api/v1/annotation-projects/{project.pk}/members").status_code == 200
    assert lead_client.get(f"/api/v1/annotation-projects/{elsewhere.pk}/members").status_code == 404
    assert lead_client.post("/api/v1/annotation-projects", {"name": "z", "dataset": project.dataset_id,
                            "questions": [{"kind": "binary"}]}, format="json").status_code == 403
    assert AnnotationProject.objects.count() == 2
