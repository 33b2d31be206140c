"""Every question kind through submit: valid answers write the right Feedback; each kind of
bad answer is a 400 naming the field, and nothing is written."""

import pytest

from annotate.models import Assignment, Comment, Item
from corpus.models import Feedback, Response

from .conftest import make_project
from .test_queue import next_item, url


@pytest.fixture
def setup(corpus_dataset, users, annotators):
    user, client = annotators[0]
    project = make_project(corpus_dataset, users["manager"],
                           ("rating", "ranking", "binary", "edit", "comment"),
                           members=[(user, "annotator")])
    item = next_item(client, project)
    order = [r["id"] for r in item["responses"]]
    return project, client, item, order, user


def full_answers(shown, **override):
    answers = {
        "quality": [{"response": r, "aspect": a, "value": 1 + (i % 5)}
                    for i, r in enumerate(shown) for a in ("helpfulness", "honesty")],
        "order": {"ranking": [[shown[1]], [shown[0], shown[2]]], "all_bad": False},
        "ok": [{"response": r, "label": i == 0, "reason": "wrong" if i else ""} for i, r in enumerate(shown)],
        "fix": {"response": shown[0], "text": "A better, rewritten answer."},
        "notes": {"text": "Prompt is ambiguous."},
    }
    answers.update(override)
    return {k: v for k, v in answers.items() if v is not ...}


def test_a_full_valid_submission_writes_every_kind(setup):
    project, client, item, order, user = setup
    response = client.post(url(project, "submit"), {"item": item["item"], "answers": full_answers(order)},
                           format="json")
    assert response.status_code == 201, response.content
    kinds = sorted(Feedback.objects.values_list("kind", flat=True))
    assert kinds == ["binary"] * 3 + ["edit", "ranking"] + ["rating"] * 6
    rating = Feedback.objects.filter(kind="rating").first()
    assert rating.payload["scale_max"] == 5 and rating.payload["aspect"] == "helpfulness"
    ranking = Feedback.objects.get(kind="ranking").payload
    assert ranking == {"ranking": [[order[1]], [order[0], order[2]]], "all_bad": False}
    rewrite = Response.objects.get(edited_from_id=order[0])
    assert rewrite.author == user and rewrite.author_kind == "human"
    assert "+A better, rewritten answer." in rewrite.provenance["diff"]
    assert Feedback.objects.get(kind="edit").payload == {"response": order[0], "edited": rewrite.pk}
    assert Comment.objects.get().text == "Prompt is ambiguous."
    assert all(f.provenance["item"] == item["item"] for f in Feedback.objects.all())


def test_partial_ranking_ties_and_all_bad_are_accepted(setup):
    project, client, item, order, _ = setup
    for ranking in ({"ranking": [[order[2]], [order[0]]]}, {"ranking": [], "all_bad": True},
                    {"ranking": [[order[0], order[1], order[2]]]}):
        project.questions = [q if q["name"] != "order" else {**q, "top_k": 2} for q in project.questions]
        project.save()
        answers = full_answers(order, order=ranking, fix=..., notes=...)
        response = client.post(url(project, "submit"), {"item": item["item"], "answers": answers}, format="json")
        assert response.status_code == 201, (ranking, response.content)
        assert client.post(url(project, "undo")).status_code == 200


def test_unchanged_edit_and_empty_optional_answers_write_nothing_extra(setup):
    project, client, item, order, _ = setup
    original = Response.objects.get(pk=order[0]).text
    answers = full_answers(order, fix={"response": order[0], "text": original}, notes={"text": "  "})
    assert client.post(url(project, "submit"), {"item": item["item"], "answers": answers},
                       format="json").status_code == 201
    assert not Response.objects.filter(edited_from__isnull=False).exists()
    assert not Comment.objects.exists() and not Feedback.objects.filter(kind="edit").exists()


BAD = {
    "quality": [
        ("value out of scale", lambda o: [{"response": o[0], "aspect": "helpfulness", "value": 6}], "value"),
        ("value zero", lambda o: [{"response": o[0], "aspect": "honesty", "value": 0}], "value"),
        ("not an integer", lambda o: [{"response": o[0], "aspect": "honesty", "value": "4"}], "value"),
        ("unknown aspect", lambda o: [{"response": o[0], "aspect": "style", "value": 3}], "aspect"),
        ("foreign response", lambda o: [{"response": 999999, "aspect": "honesty", "value": 3}], "response"),
        ("missing cells", lambda o: [{"response": o[0], "aspect": "honesty", "value": 3}], "answers.quality"),
        ("rated twice", lambda o: [{"response": o[0], "aspect": "honesty", "value": 3}] * 2, "answers.quality[1]"),
        ("not a list", lambda o: {"response": o[0], "value": 3}, "answers.quality"),
        ("unknown field", lambda o: [{"response": o[0], "aspect": "honesty", "value": 3, "x": 1}], "x"),
    ],
    "order": [
        ("ranked twice", lambda o: {"ranking": [[o[0]], [o[0]]]}, "ranking[1]"),
        ("foreign id", lambda o: {"ranking": [[o[0]], [424242]]}, "ranking[1]"),
        ("too few", lambda o: {"ranking": [[o[0]]]}, "ranking"),
        ("all_bad not bool", lambda o: {"ranking": [], "all_bad": "yes"}, "all_bad"),
        ("not an object", lambda o: [[o[0]], [o[1]]], "answers.order"),
        ("empty group", lambda o: {"ranking": [[o[0]], []]}, "ranking[1]"),
    ],
    "better": [
        ("bad choice", lambda o: {"choice": "c"}, "choice"),
        ("tie with strength", lambda o: {"choice": "tie", "strength": "much"}, "strength"),
        ("bad strength", lambda o: {"choice": "a", "strength": "huge"}, "strength"),
        ("a and b given", lambda o: {"choice": "a", "a": o[0]}, "answers.better.a"),
        ("missing choice", lambda o: {}, "choice"),
    ],
    "ok": [
        ("label not bool", lambda o: [{"response": r, "label": "up"} for r in o], "label"),
        ("not every response", lambda o: [{"response": o[0], "label": True}], "answers.ok"),
        ("twice", lambda o: [{"response": o[0], "label": True}] * 2 + [{"response": r, "label": True} for r in o[1:]],
         "answers.ok[1].response"),
        ("reason not text", lambda o: [{"response": r, "label": True, "reason": 3} for r in o], "reason"),
    ],
    "fix": [
        ("empty text", lambda o: {"response": o[0], "text": ""}, "answers.fix.text"),
        ("foreign response", lambda o: {"response": 77777, "text": "x"}, "answers.fix.response"),
        ("extra field", lambda o: {"response": o[0], "text": "x", "edited": 1}, "answers.fix.edited"),
    ],
    "notes": [
        ("not text", lambda o: {"text": 5}, "answers.notes.text"),
        ("too long", lambda o: {"text": "x" * 20_001}, "answers.notes.text"),
    ],
}
CASES = [(question, name, build, field) for question, cases in BAD.items() for name, build, field in cases]


@pytest.mark.parametrize("question,name,build,field", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_answers_are_400_and_write_nothing(setup, users, question, name, build, field):
    project, client, item, order, user = setup
    answers = full_answers(order, **{question: build(order)})
    if question == "better":  # pairwise projects show two responses: a project of its own
        project = make_project(project.dataset, users["manager"], ("pairwise",), members=[(user, "annotator")])
        item = next_item(client, project)
        order = [r["id"] for r in item["responses"]]
        answers = {"better": build(order)}
        client.post(url(setup[0], "release"), {"item": setup[2]["item"]}, format="json")
    response = client.post(url(project, "submit"), {"item": item["item"], "answers": answers}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"][0]["field"], body
    assert not Feedback.objects.exists() and not Comment.objects.exists()
    assert not Response.objects.filter(edited_from__isnull=False).exists()
    assert Assignment.objects.get(item_id=item["item"]).status == "leased"
    assert Item.objects.get(pk=item["item"]).submitted == 0


def test_pairwise_answers_name_the_pair_in_the_annotators_order(corpus_dataset, users, annotators):
    user, client = annotators[0]
    project = make_project(corpus_dataset, users["manager"], ("pairwise",), members=[(user, "annotator")])
    item = next_item(client, project)
    order = [r["id"] for r in item["responses"]]
    assert len(order) == 2 and sorted(order) == sorted(Item.objects.get(pk=item["item"]).response_ids)
    response = client.post(url(project, "submit"), {"item": item["item"], "answers": {
        "better": {"choice": "b", "strength": "much"}}}, format="json")
    assert response.status_code == 201
    assert Feedback.objects.get().payload == {"a": order[0], "b": order[1], "choice": "b", "strength": "much",
                                              "margin": None}


@pytest.mark.parametrize("body,field", [
    ({"answers": {}}, "item"),
    ({"item": "x", "answers": {}}, "item"),
    ({"item": 1, "answers": "nope"}, "answers"),
    ({"item": 1, "answers": {"unknown": 1}}, "answers.unknown"),
    ({"item": 1, "answers": {}}, "answers.quality"),
])
def test_bad_submit_bodies(setup, body, field):
    project, client, item, order, _ = setup
    body = {**body}
    if body.get("item") == 1:
        body["item"] = item["item"]
    response = client.post(url(project, "submit"), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("questions,field", [
    ([], "questions"),
    ([{"kind": "stars"}], "questions"),
    ([{"kind": "rating", "scale": 1}], "questions"),
    ([{"kind": "rating", "aspects": ["Bad Name"]}], "questions"),
    ([{"kind": "pairwise", "name": "a"}, {"kind": "binary", "name": "a"}], "questions"),
    ([{"kind": "ranking", "top_k": 0}], "questions"),
    ([{"kind": "binary", "colour": "red"}], "questions"),
])
def test_bad_question_definitions_are_400(clients, corpus_dataset, questions, field):
    from annotate.models import AnnotationProject

    response = clients["manager"].post("/api/v1/annotation-projects",
                                       {"name": "x", "dataset": corpus_dataset.pk, "questions": questions},
                                       format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert not AnnotationProject.objects.exists()
