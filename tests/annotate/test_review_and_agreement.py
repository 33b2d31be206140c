"""Agreement and the review queue through the API: two annotators disagree, a reviewer sets
the final answer, and the Feedback rows say which answer the builders use."""

import pytest

from annotate.models import Item, Review
from corpus.models import Feedback

from .conftest import make_project
from .test_queue import next_item, url


def canonical_choice(item, winner_id):
    order = [r["id"] for r in item["responses"]]
    return "a" if order[0] == winner_id else "b"


@pytest.fixture
def judged(corpus_dataset, users, annotators, django_user_model):
    (alice, a), (bob, b), (rita, r) = annotators[:3]
    project = make_project(corpus_dataset, users["manager"], ("pairwise", "rating"), overlap=2,
                           members=[(alice, "annotator"), (bob, "annotator"), (rita, "reviewer")])
    # alice and bob agree on items 1-3 (first stored response wins) and disagree on 4-6
    for client, contrary in ((a, False), (b, True)):
        for n in range(6):
            item = next_item(client, project)
            stored = Item.objects.get(pk=item["item"]).response_ids
            index = sorted(i.pk for i in Item.objects.filter(project=project)).index(item["item"])
            winner = stored[1] if (contrary and index >= 3) else stored[0]
            ratings = [{"response": resp["id"], "aspect": aspect,
                        "value": 5 if resp["id"] == winner else (1 if contrary and index >= 3 else 2)}
                       for resp in item["responses"] for aspect in ("helpfulness", "honesty")]
            response = client.post(url(project, "submit"), {"item": item["item"], "answers": {
                "better": {"choice": canonical_choice(item, winner), "strength": None},
                "quality": ratings}}, format="json")
            assert response.status_code == 201, response.content
    return project, r, users


def test_agreement_report(judged, clients):
    project, _, _ = judged
    report = clients["manager"].get(url(project, "agreement") + "?timeline=1").json()
    pairwise = next(q for q in report["questions"] if q["question"] == "better")
    assert pairwise["units_with_overlap"] == 6
    assert pairwise["pairwise_agreement"] == pytest.approx(0.5)
    assert pairwise["per_annotator"] == {"ann0": 0.5, "ann1": 0.5}
    assert pairwise["alpha_level"] == "nominal" and pairwise["krippendorff_alpha"] is not None
    assert set(pairwise["cohen_kappa"]) == {"ann0~ann1"}
    rating = next(q for q in report["questions"] if q["question"] == "quality")
    assert rating["alpha_level"] == "interval"
    assert sum(rating["histogram"].values()) == 6 * 2 * 2 * 2
    assert rating["timeline"] and rating["timeline"][-1]["submissions"] == 12


def test_review_lists_disagreements_and_final_answers_win(judged):
    project, reviewer, _ = judged
    listed = reviewer.get(url(project, "review")).json()["results"]
    pairwise = [d for d in listed if d["question"] == "better"]
    assert len(pairwise) == 3 and all(len(d["answers"]) == 2 for d in pairwise)
    target = pairwise[0]["item"]
    bad = reviewer.post(url(project, "review"), {"item": target, "question": "better", "answer": {"choice": "z"}},
                        format="json")
    assert bad.status_code == 400 and not Review.objects.exists()
    assert not Feedback.objects.filter(provenance__final=True).exists()
    for choice in ("a", "b"):  # a second verdict replaces the first
        ok = reviewer.post(url(project, "review"), {"item": target, "question": "better",
                                                    "answer": {"choice": choice, "strength": "clear"}}, format="json")
        assert ok.status_code == 201, ok.content
    final = Feedback.objects.get(provenance__final=True)
    stored = Item.objects.get(pk=target).response_ids
    assert final.payload["a"] == stored[0] and final.payload["choice"] == "b"
    assert final.provenance["role"] == "reviewer" and final.provenance["item"] == target
    pending = reviewer.get(url(project, "review") + "?pending=1").json()["results"]
    assert target not in [d["item"] for d in pending if d["question"] == "better"]
    item_view = reviewer.get(url(project, f"items/{target}") + "?render=1").json()
    assert [r["id"] for r in item_view["responses"]] == stored and "diff_html" in item_view["responses"][0]


def test_progress_per_annotator(judged, clients):
    project, reviewer, _ = judged
    report = clients["manager"].get(url(project, "progress")).json()
    assert report["items"] == 6 and report["annotations_done"] == 12 and report["percent"] == 100.0
    rows = {a["annotator"]: a for a in report["annotators"]}
    assert rows["ann0"]["submitted"] == 6 and rows["ann2"]["role"] == "reviewer"
