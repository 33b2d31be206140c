"""The queue through the API: overlap, never twice, breadth-first, skip, release, lease
expiry, own responses, idempotent submit, undo."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Assignment, Item
from corpus.models import AuthorKind, Feedback, Response

from .conftest import make_project


def url(project, action=""):
    return f"/api/v1/annotation-projects/{project.pk}/{action}"


def pairwise_answer(choice="a"):
    return {"better": {"choice": choice, "strength": None if choice == "tie" else "clear"}}


def next_item(client, project, **body):
    response = client.post(url(project, "next"), body, format="json")
    assert response.status_code in (200, 204), response.content
    return response.json() if response.status_code == 200 else None


def do_one(client, project, choice="a", key=None):
    item = next_item(client, project)
    assert item is not None
    body = {"item": item["item"], "answers": pairwise_answer(choice)}
    if key:
        body["client_key"] = key
    response = client.post(url(project, "submit"), body, format="json")
    assert response.status_code == 201, response.content
    return item


@pytest.fixture
def pairwise_project(corpus_dataset, users, annotators):
    return make_project(corpus_dataset, users["manager"], ("pairwise",), overlap=2,
                        members=[(u, "annotator") for u, _ in annotators])


def test_overlap_caps_submissions_and_nobody_twice(pairwise_project, annotators):
    project = pairwise_project
    seen = {}
    for user, client in annotators:
        while (item := next_item(client, project)) is not None:
            assert item["item"] not in seen.setdefault(user.pk, set())
            seen[user.pk].add(item["item"])
            response = client.post(url(project, "submit"), {"item": item["item"], "answers": pairwise_answer()},
                                   format="json")
            assert response.status_code == 201
    items = list(Item.objects.filter(project=project))
    assert len(items) == 6
    assert all(i.submitted == 2 and i.claimed == 2 for i in items)
    assert Feedback.objects.filter(kind="pairwise").count() == 12
    # breadth-first: the second annotator finished the first annotator's items first
    first, second = seen[annotators[0][0].pk], seen[annotators[1][0].pk]
    assert first == second and len(first) == 6
    assert not seen.get(annotators[2][0].pk)


def test_feedback_rows_carry_the_contract_provenance(pairwise_project, annotators):
    user, client = annotators[0]
    item = do_one(client, pairwise_project, "b")
    row = Feedback.objects.get()
    order = [r["id"] for r in item["responses"]]
    assert row.author == user and row.author_kind == "human"
    assert row.payload == {"a": order[0], "b": order[1], "choice": "b", "strength": "clear", "margin": None}
    assert row.provenance == {"annotation_project": pairwise_project.pk, "question": "better",
                              "item": item["item"], "gold": False, "role": "annotator",
                              "response_order": order}
    assert Assignment.objects.get().response_order == order


def test_next_returns_the_held_lease_until_the_client_says_it_holds_it(pairwise_project, annotators):
    _, client = annotators[0]
    first = next_item(client, pairwise_project)
    assert next_item(client, pairwise_project)["item"] == first["item"]  # a reload gets it back
    prefetched = next_item(client, pairwise_project, holding=[first["item"]])
    assert prefetched["item"] != first["item"]
    assert Item.objects.get(pk=first["item"]).claimed == 1


def test_skip_hands_the_item_to_others_never_back(pairwise_project, annotators):
    (_, alice), (_, bob) = annotators[:2]
    project = pairwise_project
    project.overlap = 1
    project.save()
    item = next_item(alice, project)
    assert alice.post(url(project, "skip"), {"item": item["item"]}, format="json").status_code == 204
    assert Item.objects.get(pk=item["item"]).claimed == 0
    mine = set()
    while (nxt := next_item(alice, project)) is not None:
        mine.add(nxt["item"])
        alice.post(url(project, "submit"), {"item": nxt["item"], "answers": pairwise_answer()}, format="json")
    assert item["item"] not in mine and len(mine) == 5
    assert next_item(bob, project)["item"] == item["item"]
    assert alice.post(url(project, "skip"), {"item": item["item"]}, format="json").status_code == 404


def test_release_gives_the_item_back_to_the_pool(pairwise_project, annotators):
    _, alice = annotators[0]
    item = next_item(alice, pairwise_project)
    assert alice.post(url(pairwise_project, "release"), {"item": item["item"]}, format="json").status_code == 204
    assert Item.objects.get(pk=item["item"]).claimed == 0
    assert not Assignment.objects.exists()
    assert alice.post(url(pairwise_project, "release"), {"item": item["item"]}, format="json").status_code == 404


def test_expired_leases_stop_counting(pairwise_project, annotators):
    project = pairwise_project
    project.overlap = 1
    project.save()
    (_, alice), (_, bob) = annotators[:2]
    held = [next_item(alice, project, holding=[])["item"]]
    for _ in range(5):
        held.append(next_item(alice, project, holding=held)["item"])
    assert next_item(bob, project) is None  # all six leased to alice
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    got = next_item(bob, project)
    assert got is not None and got["item"] in held
    assert Assignment.objects.count() == 1 and Item.objects.get(pk=got["item"]).claimed == 1
    # alice submits late for an item nobody took: accepted; for bob's item: refused
    free = next(i for i in held if i != got["item"])
    ok = alice.post(url(project, "submit"), {"item": free, "answers": pairwise_answer()}, format="json")
    assert ok.status_code == 201
    taken = alice.post(url(project, "submit"), {"item": got["item"], "answers": pairwise_answer()}, format="json")
    assert taken.status_code == 409 and taken.json()["code"] == "lease_expired"


def test_annotators_never_judge_their_own_responses(corpus_dataset, users, annotators):
    author, client = annotators[0]
    records = list(corpus_dataset.records.all())
    for record in records[:5]:
        Response.objects.create(record=record, text="mine", author_kind=AuthorKind.HUMAN, author=author)
    project = make_project(corpus_dataset, users["manager"], ("pairwise",), members=[(author, "annotator")])
    got = next_item(client, project)
    assert got["record"]["id"] == records[5].pk
    client.post(url(project, "submit"), {"item": got["item"], "answers": pairwise_answer()}, format="json")
    assert next_item(client, project) is None
    own = Item.objects.get(project=project, record=records[0])
    refused = client.post(url(project, "submit"), {"item": own.pk, "answers": pairwise_answer()}, format="json")
    assert refused.status_code == 403


def test_submit_is_idempotent_by_client_key(pairwise_project, annotators):
    _, client = annotators[0]
    item = next_item(client, pairwise_project)
    body = {"item": item["item"], "answers": pairwise_answer(), "client_key": "k-1"}
    first = client.post(url(pairwise_project, "submit"), body, format="json")
    again = client.post(url(pairwise_project, "submit"), body, format="json")
    assert first.status_code == 201 and again.status_code == 200 and again.json()["replayed"]
    assert Feedback.objects.count() == 1 and Item.objects.get(pk=item["item"]).submitted == 1
    other = next_item(client, pairwise_project)
    reused = client.post(url(pairwise_project, "submit"),
                         {"item": other["item"], "answers": pairwise_answer(), "client_key": "k-1"}, format="json")
    assert reused.status_code == 400 and reused.json()["errors"][0]["field"] == "client_key"
    no_key = client.post(url(pairwise_project, "submit"), {"item": item["item"], "answers": pairwise_answer()},
                         format="json")
    assert no_key.status_code == 409


def test_undo_takes_back_the_last_submission(pairwise_project, annotators):
    _, client = annotators[0]
    first = do_one(client, pairwise_project, "a")
    second = do_one(client, pairwise_project, "b")
    undone = client.post(url(pairwise_project, "undo"))
    assert undone.status_code == 200
    assert undone.json()["item"] == second["item"]
    assert undone.json()["previous_answers"] == pairwise_answer("b")
    assert Feedback.objects.count() == 1
    assert Item.objects.get(pk=second["item"]).submitted == 0
    assert Item.objects.get(pk=second["item"]).claimed == 1
    # the undone item is leased to them again and comes first
    assert next_item(client, pairwise_project)["item"] == second["item"]
    resubmit = client.post(url(pairwise_project, "submit"),
                           {"item": second["item"], "answers": pairwise_answer("tie")}, format="json")
    assert resubmit.status_code == 201
    assert client.post(url(pairwise_project, "undo")).json()["item"] == second["item"]
    assert client.post(url(pairwise_project, "undo")).json()["item"] == first["item"]
    assert client.post(url(pairwise_project, "undo")).status_code == 404
    assert not Feedback.objects.exists()


def test_excluded_annotator_gets_no_work_and_their_rows_are_marked(pairwise_project, annotators, clients):
    user, client = annotators[0]
    do_one(client, pairwise_project)
    manager = clients["manager"]
    response = manager.post(url(pairwise_project, f"members/{user.pk}/exclude"), {}, format="json")
    assert response.status_code == 200 and response.json()["feedback_marked"] == 1
    assert Feedback.objects.get().provenance["excluded"] is True
    assert Item.objects.filter(submitted__gt=0).count() == 0
    assert client.post(url(pairwise_project, "next"), {}, format="json").status_code == 403
    back = manager.post(url(pairwise_project, f"members/{user.pk}/exclude"), {"excluded": False}, format="json")
    assert back.status_code == 200 and "excluded" not in Feedback.objects.get().provenance
    assert Item.objects.filter(submitted=1).count() == 1


def test_gold_items_are_served_at_the_gold_rate_and_scored(corpus_dataset, users, annotators, clients):
    (alice, a_client), (bob, b_client) = annotators[:2]
    project = make_project(corpus_dataset, users["manager"], ("pairwise",), overlap=1, gold_rate=1.0,
                           members=[(alice, "annotator"), (bob, "annotator")])
    gold_item = Item.objects.filter(project=project).first()
    manager = clients["manager"]
    bad = manager.post(url(project, "gold"), {"item": gold_item.pk, "answers": {"better": {"choice": "x"}}},
                       format="json")
    assert bad.status_code == 400 and not Item.objects.filter(is_gold=True).exists()
    made = manager.post(url(project, "gold"), {"item": gold_item.pk, "answers": {"better": {"choice": "a"}}},
                        format="json")
    assert made.status_code == 200, made.content
    gold_winner = gold_item.response_ids[0]
    for client, right in ((a_client, True), (b_client, False)):
        item = next_item(client, project)
        assert item["item"] == gold_item.pk  # gold first at rate 1.0, and to everyone
        order = [r["id"] for r in item["responses"]]
        choice = "a" if (order[0] == gold_winner) == right else "b"
        client.post(url(project, "submit"), {"item": item["item"], "answers": pairwise_answer(choice)}, format="json")
    accuracy = {row["annotator"]: row["accuracy"] for row in manager.get(url(project, "gold")).json()["accuracy"]}
    assert accuracy == {alice.username: 1.0, bob.username: 0.0}
    assert Feedback.objects.filter(provenance__gold=True).count() == 2
    assert Item.objects.get(pk=gold_item.pk).submitted == 2  # gold ignores the overlap
