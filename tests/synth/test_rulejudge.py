"""The rule judge: pairwise verdicts by a rule, stored as Feedback beside the LLM judge's,
and a preference snapshot built from them."""

import pytest

from corpus.models import Dataset, Feedback, Record, Response
from synth.rulejudge import judge_dataset

pytestmark = pytest.mark.django_db

SHORT = "Tides come from the moon's pull."
LONG = "The moon pulls the sea. The sun helps. Water bulges. Earth turns. So tides rise and fall."
MEDIUM = "The moon pulls the sea. The sun helps a little."


def record_with(dataset, prompt, *texts, status="kept"):
    record = Record.objects.create(dataset=dataset, prompt=prompt, status=status)
    responses = [Response.objects.create(record=record, text=t, author_kind="model", model_name="m")
                 for t in texts]
    return record, responses


def test_verdicts_follow_the_rule_in_both_orders():
    dataset = Dataset.objects.create(name="rj")
    record, (long, short) = record_with(dataset, "Why are there tides?", LONG, SHORT)
    counts = judge_dataset(dataset, "max_sentences:3")
    assert counts == {"records": 1, "pairs": 1, "decisive": 1, "feedback": 2}
    rows = list(Feedback.objects.filter(record=record).order_by("id"))
    assert [r.payload for r in rows] == [{"a": long.pk, "b": short.pk, "choice": "b"}] * 2
    assert [r.provenance["swapped"] for r in rows] == [False, True]
    assert rows[1].provenance["shown"] == [short.pk, long.pk]
    assert {r.model_name for r in rows} == {"rule:max_sentences:3"}
    assert {r.author_kind for r in rows} == {"model"}


def test_ties_are_recorded_and_not_counted_decisive():
    dataset = Dataset.objects.create(name="rj")
    record_with(dataset, "Why are there tides?", SHORT, MEDIUM)  # both within three sentences
    counts = judge_dataset(dataset, "max_sentences:3")
    assert counts["decisive"] == 0
    assert set(Feedback.objects.values_list("payload__choice", flat=True)) == {"tie"}


def test_three_responses_make_three_pairs_and_dropped_ones_are_left_out():
    dataset = Dataset.objects.create(name="rj")
    _, responses = record_with(dataset, "Why are there tides?", LONG, SHORT, MEDIUM)
    record_with(dataset, "A dropped prompt", LONG, SHORT, status="dropped")
    Response.objects.filter(pk=responses[2].pk).update(status="dropped")
    assert judge_dataset(dataset, "max_sentences:3")["pairs"] == 1
    Response.objects.filter(pk=responses[2].pk).update(status="kept")
    assert judge_dataset(dataset, "max_sentences:3")["pairs"] == 3


def test_judging_again_replaces_its_verdicts_and_leaves_others_alone():
    dataset = Dataset.objects.create(name="rj")
    record, (long, short) = record_with(dataset, "Why are there tides?", LONG, SHORT)
    human = Feedback.objects.create(record=record, kind="pairwise", author_kind="human",
                                    payload={"a": long.pk, "b": short.pk, "choice": "a"})
    judge_dataset(dataset, "max_sentences:3")
    judge_dataset(dataset, "max_sentences:3")
    assert Feedback.objects.filter(provenance__method="rule_judge").count() == 2
    assert Feedback.objects.filter(pk=human.pk).exists()


def test_an_unknown_rule_is_refused_before_anything_is_written():
    dataset = Dataset.objects.create(name="rj")
    record_with(dataset, "Why are there tides?", LONG, SHORT)
    with pytest.raises(ValueError, match="unknown rule 'max_vibes'"):
        judge_dataset(dataset, "max_vibes:2")
    assert not Feedback.objects.exists()


def test_a_snapshot_from_the_rule_judge_prefers_the_short_answer(transactional_db):
    from corpus.snapshots.job import start_snapshot_build
    from jobs.runner import run_job

    dataset = Dataset.objects.create(name="rj")
    for i in range(4):
        record_with(dataset, f"Question number {i} about tides?", LONG, SHORT + f" ({i})")
    judge_dataset(dataset, "max_sentences:3")
    snapshot = start_snapshot_build(
        {"name": "rule prefs", "kind": "preference", "sources": {"datasets": ["rj"]},
         "policies": {"signals": ["pairwise"], "aggregation": "majority"},
         "split": {"test_fraction": 0.0}, "output": {"format": "plain"}}, enqueue=False)
    run_job(snapshot.job_id)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready" and snapshot.counts["train"] == 4
    rows = (snapshot.directory / "train.jsonl").read_text().splitlines()
    assert all(SHORT in row.split('"chosen"')[1].split('"rejected"')[0] for row in rows)
