"""Project CRUD and members through the API, and the new user's journey of the issue: a
pairwise project on generated responses, two annotators, 20 items each, the agreement."""

import pytest

from annotate.models import AnnotationProject, Item, ProjectMember
from corpus.models import Dataset, Feedback, Record

from .conftest import make_records

API = "/api/v1/annotation-projects"


def create(client, dataset, **extra):
    body = {"name": "round-1", "dataset": dataset.pk, "questions": [{"name": "better", "kind": "pairwise"}],
            "overlap": 2, **extra}
    return client.post(API, body, format="json")


def test_create_builds_items_from_the_filter(manager_client, users):
    dataset = Dataset.objects.create(name="gen")
    kept = make_records(dataset, 4, responses=2, source="synth", metadata={"category": "qa"})
    make_records(dataset, 2, responses=2, source="import")
    make_records(dataset, 1, responses=1, source="synth", metadata={"category": "qa"})  # too few responses
    dropped = make_records(dataset, 1, responses=2, source="synth", metadata={"category": "qa"})[0]
    dropped.status = "dropped"
    dropped.save()
    response = create(manager_client, dataset, record_filter={"source": "synth", "metadata": {"category": "qa"}})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["item_count"] == 4 and body["my_role"] == "manager"
    project = AnnotationProject.objects.get()
    assert set(Item.objects.values_list("record_id", flat=True)) == {r.pk for r in kept}
    assert ProjectMember.objects.get().user == users["manager"]
    # widening the filter adds the newly matching records' items (and keeps the old ones)
    patched = manager_client.patch(f"{API}/{project.pk}", {"record_filter": {"status": "any"}}, format="json")
    assert patched.status_code == 200 and patched.json()["item_count"] == 7


@pytest.mark.parametrize("extra,field", [
    ({"record_filter": {"status": "maybe"}}, "record_filter"),
    ({"record_filter": {"colour": "red"}}, "record_filter"),
    ({"record_filter": {"metadata": {"bad key!": 1}}}, "record_filter"),
    ({"overlap": 0}, "overlap"),
    ({"gold_rate": 1.5}, "gold_rate"),
    ({"lease_seconds": 5}, "lease_seconds"),
    ({"dataset": 99999}, "dataset"),
])
def test_bad_project_settings_are_400(manager_client, corpus_dataset, extra, field):
    body = {"dataset": corpus_dataset, **extra}
    dataset = body.pop("dataset")
    if isinstance(dataset, int):
        response = manager_client.post(API, {"name": "x", "dataset": dataset, "questions": [{"kind": "binary"}]},
                                       format="json")
    else:
        response = create(manager_client, dataset, **extra)
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert not AnnotationProject.objects.exists() and not Item.objects.exists()


def test_questions_and_dataset_are_frozen_once_answers_are_in(manager_client, corpus_dataset, annotators):
    project_id = create(manager_client, corpus_dataset).json()["id"]
    user, client = annotators[0]
    manager_client.post(f"{API}/{project_id}/members", {"username": user.username}, format="json")
    item = client.post(f"{API}/{project_id}/next", {}, format="json").json()
    client.post(f"{API}/{project_id}/submit", {"item": item["item"], "answers": {"better": {"choice": "a"}}},
                format="json")
    changed = manager_client.patch(f"{API}/{project_id}", {"questions": [{"kind": "binary"}]}, format="json")
    assert changed.status_code == 400 and changed.json()["errors"][0]["field"] == "questions"
    other = Dataset.objects.create(name="other")
    moved = manager_client.patch(f"{API}/{project_id}", {"dataset": other.pk}, format="json")
    assert moved.status_code == 400
    assert manager_client.patch(f"{API}/{project_id}", {"guidelines": "Be kind."}, format="json").status_code == 200
    # a member with work cannot be removed (exclude them instead); one without can
    removed = manager_client.delete(f"{API}/{project_id}/members/{user.pk}")
    assert removed.status_code == 400
    idle, _ = annotators[1]
    manager_client.post(f"{API}/{project_id}/members", {"username": idle.username, "role": "reviewer"}, format="json")
    assert manager_client.delete(f"{API}/{project_id}/members/{idle.pk}").status_code == 204
    assert manager_client.post(f"{API}/{project_id}/members", {"username": "nobody"},
                               format="json").status_code == 400
    assert manager_client.post(f"{API}/{project_id}/members", {"username": idle.username, "role": "boss"},
                               format="json").status_code == 400


def test_new_user_journey_pairwise_two_annotators_twenty_items(manager_client, annotators):
    dataset = Dataset.objects.create(name="generated")
    records = make_records(dataset, 25, responses=2)
    for record in records:
        record.responses.update(author_kind="model")
    project = create(manager_client, dataset, name="journey", guidelines="Pick the more helpful answer.").json()
    (alice, a), (bob, b) = annotators[:2]
    for user in (alice, bob):
        added = manager_client.post(f"{API}/{project['id']}/members", {"username": user.username}, format="json")
        assert added.status_code == 201
    for client, contrary in ((a, False), (b, True)):
        for n in range(20):
            item = client.post(f"{API}/{project['id']}/next", {"render": True}, format="json").json()
            assert item["responses"][0]["html"]
            stored = Item.objects.get(pk=item["item"]).response_ids
            winner = stored[1] if (contrary and n % 4 == 0) else stored[0]
            choice = "a" if item["responses"][0]["id"] == winner else "b"
            done = client.post(f"{API}/{project['id']}/submit",
                               {"item": item["item"], "answers": {"better": {"choice": choice, "strength": "clear"}},
                                "client_key": f"{client is a}-{n}"}, format="json")
            assert done.status_code == 201
    assert Feedback.objects.filter(kind="pairwise").count() == 40
    progress = manager_client.get(f"{API}/{project['id']}/progress").json()
    assert progress["items_complete"] == 20 and progress["annotations_done"] == 40
    agreement = manager_client.get(f"{API}/{project['id']}/agreement").json()["questions"][0]
    assert agreement["units_with_overlap"] == 20
    assert agreement["pairwise_agreement"] == pytest.approx(15 / 20)
    assert agreement["krippendorff_alpha"] is not None
    review = manager_client.get(f"{API}/{project['id']}/review?pending=1").json()["results"]
    assert len(review) == 5
    assert Record.objects.count() == 25


def test_submissions_are_throttled_per_annotator(manager_client, corpus_dataset, annotators, settings):
    """A runaway script gets 429 with Retry-After, and nothing of the refused submission lands."""
    settings.WINNOW_SUBMIT_RATE = "2/min"
    project_id = create(manager_client, corpus_dataset, overlap=1).json()["id"]
    (ann, client), (bob, other) = annotators[:2]
    for user in (ann, bob):
        manager_client.post(f"{API}/{project_id}/members", {"username": user.username}, format="json")

    def submit(who):
        item = who.post(f"{API}/{project_id}/next", {}, format="json").json()["item"]
        return item, who.post(f"{API}/{project_id}/submit", {"item": item, "answers": {"better": {"choice": "a"}}},
                              format="json")

    assert [submit(client)[1].status_code for _ in range(2)] == [201, 201]
    item, refused = submit(client)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["code"] == "throttled"
    assert Feedback.objects.filter(author=ann).count() == 2
    assert not Feedback.objects.filter(author=ann, provenance__item=item).exists()
    assert submit(other)[1].status_code == 201  # the limit is per annotator
