"""Builders on hand-made feedback: the exact rows every policy produces."""

import pytest

from corpus.models import Response
from corpus.snapshots.aggregation import bradley_terry_strengths, Vote
from tests.corpus.snapshot_helpers import annotation, build, feedback, ordered, record

pytestmark = pytest.mark.django_db
PLAIN = {"format": "plain"}


@pytest.fixture
def people(django_user_model):
    return {name: django_user_model.objects.create_user(username=name) for name in ("ann", "bob", "cat", "rev")}


# -- SFT -------------------------------------------------------------------------------------


def test_sft_best_response_follows_edit_then_rating_then_thumbs_then_single(dataset, people):
    # a human edit beats a top rating
    r1, (orig, other) = record(dataset, "edited", "draft", "rated")
    rewrite = Response.objects.create(record=r1, text="the human rewrite", author_kind="human",
                                      edited_from_id=orig)
    feedback(r1, "rating", {"response": other, "value": 5}, people["ann"])
    feedback(r1, "edit", {"response": orig, "edited": rewrite.pk}, people["ann"])
    # the top-rated response at or above min_rating (mean of two annotators)
    r2, (low, high) = record(dataset, "rated", "meh", "great")
    feedback(r2, "rating", {"response": low, "value": 3}, people["ann"])
    feedback(r2, "rating", {"response": high, "value": 5}, people["ann"])
    feedback(r2, "rating", {"response": high, "value": 4}, people["bob"])
    # below the threshold: falls through to thumbs
    r3, (down, up) = record(dataset, "thumbed", "no", "yes")
    feedback(r3, "rating", {"response": down, "value": 3}, people["ann"])
    feedback(r3, "binary", {"response": down, "label": False, "reason": ""}, people["ann"])
    feedback(r3, "binary", {"response": up, "label": True, "reason": ""}, people["bob"])
    # the only response, unjudged
    record(dataset, "single", "only answer")
    # the only response, judged bad: skipped
    r5, (bad,) = record(dataset, "single bad", "bad answer")
    feedback(r5, "binary", {"response": bad, "label": False, "reason": ""}, people["ann"])
    # two responses and no judgement: nothing to choose by
    record(dataset, "ambiguous", "x", "y")

    snapshot, rows, built = build(dataset, "sft", output=PLAIN)
    assert ordered(rows) == ordered([
        {"prompt": "edited", "completion": "the human rewrite"},
        {"prompt": "rated", "completion": "great"},
        {"prompt": "thumbed", "completion": "yes"},
        {"prompt": "single", "completion": "only answer"},
    ])
    assert built["stats"]["skipped"] == {
        "only response was judged bad": 1, "several responses and no judgement to choose one": 1,
    }
    _, rows, _ = build(dataset, "sft", output=PLAIN,
                       policies={"allow_single_response": False, "min_rating": 3})
    assert ordered(rows) == ordered([
        {"prompt": "edited", "completion": "the human rewrite"},
        {"prompt": "rated", "completion": "great"},
        {"prompt": "thumbed", "completion": "no"},  # rated 3 now clears min_rating
    ])


def test_sft_formats_chat_with_system_prompt_multiturn_and_instruction_template(dataset):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    record(dataset, "and now?", "now this", history=history)
    record(dataset, "Summarise", "short", context="a long text")
    _, rows, _ = build(dataset, "sft", output={"format": "chat", "system_prompt": "Be brief."})
    assert ordered(rows) == ordered([
        {"messages": [{"role": "system", "content": "Be brief."}, *history,
                      {"role": "user", "content": "and now?"}, {"role": "assistant", "content": "now this"}]},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Summarise\n\na long text"},
                      {"role": "assistant", "content": "short"}]},
    ])
    _, rows, _ = build(dataset, "sft", output={"format": "prompt_completion"})
    assert {"prompt": [{"role": "user", "content": "Summarise\n\na long text"}],
            "completion": [{"role": "assistant", "content": "short"}]} in rows
    _, rows, _ = build(dataset, "sft", output={"format": "instruction"})
    assert ordered(rows) == ordered([
        {"prompt": "### Instruction:\nand now?\n\n### Context:\nUser: hi\nAssistant: hello\n\n### Response:\n",
         "completion": "now this"},
        {"prompt": "### Instruction:\nSummarise\n\n### Context:\na long text\n\n### Response:\n",
         "completion": "short"},
    ])


# -- preference ------------------------------------------------------------------------------


def test_pairwise_choice_strength_and_tie_policy(dataset, people):
    r1, (a, b) = record(dataset, "p1", "A1", "B1")
    feedback(r1, "pairwise", {"a": a, "b": b, "choice": "b", "strength": "much"}, people["ann"])
    r2, (c, d) = record(dataset, "p2", "C2", "D2")
    feedback(r2, "pairwise", {"a": c, "b": d, "choice": "tie"}, people["ann"])
    _, rows, built = build(dataset, "preference", output=PLAIN)
    assert rows == [{"prompt": "p1", "chosen": "B1", "rejected": "A1", "margin": 3.0,
                     "source": "human:pairwise"}]
    assert built["stats"]["skipped"] == {"tie": 1}
    _, rows, _ = build(dataset, "preference", output=PLAIN, policies={"ties": "keep"})
    assert ordered(rows) == ordered([
        {"prompt": "p1", "chosen": "B1", "rejected": "A1", "margin": 3.0, "source": "human:pairwise"},
        {"prompt": "p2", "chosen": "C2", "rejected": "D2", "margin": 0.0, "source": "human:pairwise"},
    ])


def test_majority_vote_margin_agreement_and_min_agreement(dataset, people):
    r, (a, b) = record(dataset, "vote", "A", "B")
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a", "strength": "clear"}, people["ann"])
    feedback(r, "pairwise", {"a": b, "b": a, "choice": "b"}, people["bob"])   # also for A
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "b"}, people["cat"])
    snapshot, rows, built = build(dataset, "preference", output=PLAIN)
    # margin: (2 + 1 - 1) / 3 votes
    assert rows == [{"prompt": "vote", "chosen": "A", "rejected": "B", "margin": 0.666667,
                     "source": "human:pairwise"}]
    lineage = (snapshot.directory / "lineage.jsonl").read_text()
    assert f'"annotators":["user:{people["ann"].pk}","user:{people["bob"].pk}","user:{people["cat"].pk}"]' in lineage
    assert built["stats"]["mean_agreement"] == pytest.approx(0.6667, abs=1e-4)


def test_min_agreement_that_removes_everything_fails_with_a_reason(dataset, people):
    from corpus.snapshots.writer import EmptySnapshot

    r, (a, b) = record(dataset, "vote", "A", "B")
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a"}, people["ann"])
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "b"}, people["bob"])
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a"}, people["cat"])
    with pytest.raises(EmptySnapshot, match=r"agreement below 0.7: 1.*filters.min_agreement"):
        build(dataset, "preference", filters={"min_agreement": 0.7})


@pytest.mark.parametrize("policy, expected", [
    ("all_pairs", [("R1", "R2", 1.0), ("R1", "R3", 2.0), ("R2", "R3", 1.0)]),
    ("best_vs_rest", [("R1", "R2", 1.0), ("R1", "R3", 2.0)]),
    ("adjacent", [("R1", "R2", 1.0), ("R2", "R3", 1.0)]),
    ("best_vs_worst", [("R1", "R3", 2.0)]),
])
def test_ranking_pair_policies(dataset, people, policy, expected):
    r, (x, y, z) = record(dataset, "rank", "R3", "R1", "R2")
    feedback(r, "ranking", {"ranking": [[y], [z], [x]], "all_bad": False}, people["ann"])
    _, rows, _ = build(dataset, "preference", output=PLAIN, policies={"ranking_pairs": policy})
    assert ordered(rows) == ordered([
        {"prompt": "rank", "chosen": c, "rejected": rj, "margin": m, "source": "human:ranking"}
        for c, rj, m in expected
    ])


def test_ratings_pair_when_means_differ_by_the_margin(dataset, people):
    r, (a, b, c) = record(dataset, "rate", "five", "three-and-a-half", "three")
    feedback(r, "rating", {"response": a, "value": 5}, people["ann"])
    feedback(r, "rating", {"response": b, "value": 4}, people["ann"])
    feedback(r, "rating", {"response": b, "value": 3}, people["bob"])
    feedback(r, "rating", {"response": c, "value": 3}, people["ann"])
    _, rows, _ = build(dataset, "preference", output=PLAIN, policies={"rating_margin": 1.0})
    assert ordered(rows) == ordered([
        {"prompt": "rate", "chosen": "five", "rejected": "three-and-a-half", "margin": 1.5,
         "source": "human:rating"},
        {"prompt": "rate", "chosen": "five", "rejected": "three", "margin": 2.0, "source": "human:rating"},
    ])


def test_reviewer_final_answer_wins_and_excluded_and_gold_rows_are_skipped(dataset, people):
    r, (a, b) = record(dataset, "reviewed", "A", "B")
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a"}, people["ann"], **annotation(1))
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a"}, people["bob"], **annotation(1))
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "b"}, people["rev"],
             **annotation(1, role="reviewer", final=True))
    r2, (c, d) = record(dataset, "excluded", "C", "D")
    feedback(r2, "pairwise", {"a": c, "b": d, "choice": "a"}, people["cat"], **annotation(2, excluded=True))
    r3, (e, f) = record(dataset, "gold", "E", "F")
    feedback(r3, "pairwise", {"a": e, "b": f, "choice": "b"}, people["ann"], **annotation(3, gold=True))
    _, rows, built = build(dataset, "preference", output=PLAIN)
    assert rows == [{"prompt": "reviewed", "chosen": "B", "rejected": "A", "margin": 1.0,
                     "source": "human:pairwise"}]
    assert built["stats"]["feedback_skipped"] == {
        "excluded by a manager": 1, "gold item": 1, "superseded by the reviewer's final answer": 2,
    }
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"include_gold": True})
    assert {"prompt": "gold", "chosen": "F", "rejected": "E", "margin": 1.0, "source": "human:pairwise"} in rows


def test_llm_judge_source_filter_and_excluded_annotators(dataset, people):
    r, (a, b) = record(dataset, "judged", "A", "B")
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "b"}, model="judge-7b", aspect="overall", swapped=True)
    r2, (c, d) = record(dataset, "human", "C", "D")
    feedback(r2, "pairwise", {"a": c, "b": d, "choice": "a"}, people["bob"])
    _, rows, built = build(dataset, "preference", output=PLAIN)
    assert ordered(rows) == ordered([
        {"prompt": "judged", "chosen": "B", "rejected": "A", "margin": 1.0, "source": "model:pairwise"},
        {"prompt": "human", "chosen": "C", "rejected": "D", "margin": 1.0, "source": "human:pairwise"},
    ])
    assert built["stats"]["judge_models"] == ["judge-7b"]
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"feedback_source": "model"})
    assert [row["prompt"] for row in rows] == ["judged"]
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"exclude_annotators": ["bob"]})
    assert [row["prompt"] for row in rows] == ["judged"]


def test_bradley_terry_orders_by_strength_across_annotators(dataset, people):
    r, (a, b, c) = record(dataset, "bt", "A", "B", "C")
    feedback(r, "ranking", {"ranking": [[a], [b], [c]]}, people["ann"])
    feedback(r, "ranking", {"ranking": [[b], [a], [c]]}, people["bob"])
    feedback(r, "ranking", {"ranking": [[a], [c], [b]]}, people["cat"])
    _, rows, _ = build(dataset, "preference", output=PLAIN,
                       policies={"aggregation": "bradley_terry", "ranking_pairs": "all_pairs"})
    pairs = {(row["chosen"], row["rejected"]) for row in rows}
    assert pairs == {("A", "B"), ("A", "C"), ("B", "C")}
    assert all(row["margin"] > 0 for row in rows)
    strengths = bradley_terry_strengths([Vote(1, 2, 1, 1.0, "u", 1), Vote(1, 2, 1, 1.0, "v", 2)])
    assert strengths[1] > strengths[2]


def test_curation_status_keeps_dropped_records_and_responses_out_by_default(dataset, people):
    r, (a, b, dropped) = record(dataset, "kept", "A", "B", "X")
    Response.objects.filter(pk=dropped).update(status="dropped", status_reason="pii")
    feedback(r, "ranking", {"ranking": [[dropped], [a], [b]]}, people["ann"])
    r2, (c, d) = record(dataset, "dropped", "C", "D", status="dropped")
    feedback(r2, "pairwise", {"a": c, "b": d, "choice": "a"}, people["ann"])
    _, rows, _ = build(dataset, "preference", output=PLAIN)
    assert rows == [{"prompt": "kept", "chosen": "A", "rejected": "B", "margin": 1.0, "source": "human:ranking"}]
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"status": "any"})
    assert len(rows) == 4  # X>A, X>B, A>B, C>D


def test_metadata_and_date_filters(dataset, people):
    r, (a, b) = record(dataset, "tagged", "A", "B")
    r.metadata = {"category": "qa"}
    r.save()
    feedback(r, "pairwise", {"a": a, "b": b, "choice": "a"}, people["ann"])
    r2, (c, d) = record(dataset, "other", "C", "D")
    feedback(r2, "pairwise", {"a": c, "b": d, "choice": "a"}, people["ann"])
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"metadata": {"category": "qa"}})
    assert [row["prompt"] for row in rows] == ["tagged"]
    _, rows, _ = build(dataset, "preference", output=PLAIN, filters={"created_after": "2000-01-01"})
    assert len(rows) == 2


# -- binary ----------------------------------------------------------------------------------


def test_binary_from_thumbs_ratings_and_unpaired_preferences(dataset, people):
    r1, (up, down, split) = record(dataset, "thumbs", "U", "D", "S")
    feedback(r1, "binary", {"response": up, "label": True}, people["ann"])
    feedback(r1, "binary", {"response": up, "label": True}, people["bob"])
    feedback(r1, "binary", {"response": up, "label": False}, people["cat"])
    feedback(r1, "binary", {"response": down, "label": False}, people["ann"])
    feedback(r1, "binary", {"response": split, "label": True}, people["ann"])
    feedback(r1, "binary", {"response": split, "label": False}, people["bob"])
    r2, (hi, lo, mid) = record(dataset, "ratings", "HI", "LO", "MID")
    feedback(r2, "rating", {"response": hi, "value": 5}, people["ann"])
    feedback(r2, "rating", {"response": lo, "value": 1}, people["ann"])
    feedback(r2, "rating", {"response": mid, "value": 3}, people["ann"])
    r3, (win, lose) = record(dataset, "pairs", "WIN", "LOSE")
    feedback(r3, "pairwise", {"a": win, "b": lose, "choice": "a"}, people["ann"])
    snapshot, rows, built = build(dataset, "binary", output=PLAIN)
    assert ordered(rows) == ordered([
        {"prompt": "thumbs", "completion": "U", "label": True},
        {"prompt": "thumbs", "completion": "D", "label": False},
        {"prompt": "ratings", "completion": "HI", "label": True},
        {"prompt": "ratings", "completion": "LO", "label": False},
        {"prompt": "pairs", "completion": "WIN", "label": True},
        {"prompt": "pairs", "completion": "LOSE", "label": False},
    ])
    assert built["counts"] == {"train": 6, "test": 0, "desirable": 3, "undesirable": 3}
    assert built["stats"]["skipped"] == {"rating between the thresholds": 1, "thumbs split evenly": 1}
    _, rows, _ = build(dataset, "binary", output=PLAIN, policies={"signals": ["thumbs"]})
    assert len(rows) == 2


# -- text ------------------------------------------------------------------------------------


def test_text_documents_and_token_packing(dataset):
    from transformers import AutoTokenizer

    from corpus.bundled_model import bundled_model_dir

    for i in range(6):
        record(dataset, f"Document number {i} says something about topic {i}.", f"answer {i}")
    _, rows, _ = build(dataset, "text")
    assert ordered(rows) == ordered([{"text": f"Document number {i} says something about topic {i}."}
                                     for i in range(6)])
    _, rows, _ = build(dataset, "text", policies={"include_responses": True})
    assert {"text": "Document number 0 says something about topic 0.\n\nanswer 0"} in rows
    folder = str(bundled_model_dir())
    snapshot, rows, _ = build(dataset, "text", output={"pack_to_tokens": 16, "tokenizer": folder})
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lengths = [len(tokenizer(row["text"], add_special_tokens=False)["input_ids"]) for row in rows]
    total = sum(len(tokenizer(f"Document number {i} says something about topic {i}.",
                              add_special_tokens=False)["input_ids"]) + 1 for i in range(6))
    assert len(rows) == -(-total // 16)
    assert all(abs(n - 16) <= 2 for n in lengths[:-1])  # re-tokenising a cut may merge a token
    lineage = (snapshot.directory / "lineage.jsonl").read_text().splitlines()
    assert len(lineage) == len(rows) and '"records":[' in lineage[0]
