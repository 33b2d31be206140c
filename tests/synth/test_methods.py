"""Evol-Instruct, CoT distillation and grounded generation against the loopback server, run
by the real worker; plus the pure parts (filters, parsers, ROUGE-L, chunking)."""

import pytest

from corpus.models import Record
from synth.generation import create_generation_job
from synth.methods.cot import extract_answer, normalize_answer
from synth.methods.evol_instruct import copied_prompt_text, failed_response
from synth.methods.grounded import split_into_chunks
from synth.methods.self_instruct import builtin_seed_tasks, rejection_reason
from synth.models import DiscardedOutput, Provider
from synth.parsing import UnparseableReply, parse_fields, parse_json_object, parse_pairwise_choice, parse_rating
from synth.similarity import NoveltyPool, rouge_l, rouge_tokens
from tests.synth.openai_loopback import Reply


def run(method, provider, dataset, drain_queue, **config):
    with drain_queue():
        generation = create_generation_job(method=method, provider=provider, dataset=dataset, config=config)
    generation.refresh_from_db()
    generation.job.refresh_from_db()
    return generation


def test_evol_instruct_keeps_evolutions_with_their_lineage(dataset, provider, drain_queue):
    source = Record.objects.create(dataset=dataset, prompt="Explain why leaves change colour in autumn.")
    generation = run("evol_instruct", provider, dataset, drain_queue, rounds=2, operations=["deepen"])
    assert generation.job.status == "succeeded", generation.job.error
    first, second = Record.objects.filter(job=generation.job).order_by("id")
    assert first.provenance["parent_record"] == source.pk and first.provenance["evolution"] == "deepen"
    assert second.provenance["parent_record"] == first.pk and second.provenance["round"] == 2
    assert second.provenance["origin_record"] == source.pk and first.prompt in second.prompt
    assert first.responses.count() == 1  # the answer that proved the model could handle it


def test_evol_instruct_elimination_rules(dataset, db, drain_queue, loopback):
    replies = iter(["Here is the rewritten prompt: explain leaves.",  # copied prompt text
                    "Explain why leaves change colour in autumn.",  # no information gain
                    "Explain, in four steps with chemistry, why leaves of maples change colour in autumn.",
                    "Sorry, I cannot help with that."])  # the answer to the third: model failed
    loopback.responder = lambda body: next(replies)
    provider = Provider.objects.create(name="lb", base_url=loopback.base_url, model="m", max_concurrency=1)
    for _ in range(3):
        Record.objects.create(dataset=dataset, prompt="Explain why leaves change colour in autumn.")
    generation = run("evol_instruct", provider, dataset, drain_queue, operations=["concretize"])
    assert generation.job.status == "succeeded", generation.job.error
    assert not Record.objects.filter(job=generation.job).exists()
    reasons = sorted(DiscardedOutput.objects.values_list("reason", flat=True))
    assert reasons[0].startswith("copied the prompt's wording ('rewritten prompt')")
    assert reasons[1].startswith("no information gain")
    assert reasons[2].startswith("the model could not answer it")


def test_cot_keeps_rationales_agreeing_with_the_reference(dataset, provider, drain_queue):
    right = Record.objects.create(dataset=dataset, prompt="What is 2 + 2?", metadata={"answer": "4"})
    wrong = Record.objects.create(dataset=dataset, prompt="What is 2 + 3?", metadata={"answer": "5"})
    majority = Record.objects.create(dataset=dataset, prompt="What is two plus two?")
    generation = run("cot", provider, dataset, drain_queue, k=2)
    assert generation.job.status == "succeeded", generation.job.error
    kept = list(right.responses.all())
    assert len(kept) == 2 and kept[0].provenance["answer"] == "4." and kept[0].provenance["verified_by"] == "reference"
    assert wrong.responses.count() == 0
    assert "disagrees with the reference" in DiscardedOutput.objects.filter(record=wrong).first().reason
    assert majority.responses.count() == 2 and majority.responses.first().provenance["verified_by"] == "majority"


def test_cot_without_a_marker_or_majority_discards(dataset, db, drain_queue, loopback):
    loopback.script = [Reply(text="It is four."), Reply(text="So the answer is 4."), Reply(text="So the answer is 5.")]
    provider = Provider.objects.create(name="lb", base_url=loopback.base_url, model="m", max_concurrency=1)
    record = Record.objects.create(dataset=dataset, prompt="What is 2 + 2?")
    generation = run("cot", provider, dataset, drain_queue, k=3)
    assert generation.job.status == "succeeded" and record.responses.count() == 0
    reasons = [d.reason for d in DiscardedOutput.objects.order_by("id")]
    assert any("no final answer" in r for r in reasons) and any("no majority" in r for r in reasons)


def test_grounded_generation_keeps_the_chunk_as_context(dataset, provider, drain_queue, loopback):
    text = ("The lighthouse at Cape Wrath was built in 1828. " * 30).strip()
    generation = run("grounded", provider, dataset, drain_queue, chunk_words=60, overlap_words=10,
                     documents=[{"title": "Cape Wrath", "text": text}])
    assert generation.job.status == "succeeded", generation.job.error
    # The engine writes records in completion order, so put them back in chunk order.
    records = sorted(Record.objects.filter(job=generation.job), key=lambda r: r.provenance["chunk"])
    assert len(records) == len(split_into_chunks(text, chunk_words=60, overlap_words=10)) >= 3
    assert [r.provenance["chunk"] for r in records] == list(range(len(records)))
    assert records[0].prompt == "What does the text describe?" and records[0].context in text
    assert records[0].responses.get().text == "A short grounded answer."
    assert records[0].provenance["document"] == "Cape Wrath" and records[0].provenance["chunk"] == 0


def test_grounded_json_mode_is_sent_only_to_providers_that_have_it(dataset, db, drain_queue, loopback):
    provider = Provider.objects.create(name="lb", base_url=loopback.base_url, model="m", supports_json_mode=True)
    run("grounded", provider, dataset, drain_queue, documents=[{"text": "Short text about owls."}])
    assert loopback.log[-1]["body"]["response_format"] == {"type": "json_object"}


def test_grounded_without_documents_fails_clearly(dataset, provider, drain_queue):
    generation = run("grounded", provider, dataset, drain_queue)
    assert generation.job.status == "failed" and "no documents" in generation.job.error


# -- pure parts ------------------------------------------------------------------------------


def test_rouge_l_matches_known_values():
    assert rouge_l(rouge_tokens("the cat sat on the mat"), rouge_tokens("the cat sat on the mat")) == 1.0
    # LCS "the cat the mat" = 4 of 6 and 4 of 5 words
    score = rouge_l(rouge_tokens("the cat sat on the mat"), rouge_tokens("the cat lay the mat"))
    assert score == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert rouge_l(rouge_tokens("alpha beta"), rouge_tokens("gamma delta")) == 0.0


def test_novelty_pool_prefilter_finds_near_duplicates():
    seeds = builtin_seed_tasks()
    assert 20 <= len(seeds) <= 40
    exact = NoveltyPool(prefilter_from=10_000)
    indexed = NoveltyPool(prefilter_from=5)
    for task in seeds:
        exact.add(task)
        indexed.add(task)
    probe = "Give three tips for staying healthy during a busy week at work."
    assert exact.most_similar(probe, 1)[0][0] == indexed.most_similar(probe, 1)[0][0] == seeds[0]
    assert indexed.most_similar(probe, 1)[0][1] > 0.7


def test_self_instruct_filters():
    kw = dict(min_words=4, max_words=150, blocked=["image", "go to"])
    assert rejection_reason("Describe this image in detail please.", **kw).startswith("mentions 'image'")
    assert rejection_reason("Go to the store and buy milk.", **kw).startswith("mentions 'go to'")
    assert rejection_reason("Write a program to add numbers.", **kw) == "starts with 'Write a program'"
    assert rejection_reason("¿Qué hora es ahora mismo?", **kw) == "starts with a non-ASCII character"
    assert rejection_reason("- list three birds quickly", **kw) == "starts with punctuation"
    assert rejection_reason("Name three birds.", **kw).startswith("too short")
    assert rejection_reason("Name three birds that migrate.", **kw) is None


def test_parsers_are_tolerant_and_say_why_they_fail():
    assert parse_json_object('Sure! ```json\n{"a": 1,}\n``` hope it helps') == {"a": 1}
    assert parse_json_object("prefix {'q': 'x'} suffix") == {"q": "x"}
    assert parse_rating("Rating: 4\nRationale: good.") == (4, "good.")
    assert parse_rating('{"rating": "5", "rationale": "great"}') == (5, "great")
    assert parse_rating("**Score: 2/5** because it is vague") == (2, "")
    assert parse_rating(" 3. ") == (3, "")
    with pytest.raises(UnparseableReply, match="no rating"):
        parse_rating("It is fine.")
    with pytest.raises(UnparseableReply, match="outside"):
        parse_rating('{"rating": 9}')
    assert parse_pairwise_choice("Choice: B\nRationale: shorter") == "b"
    assert parse_pairwise_choice('{"choice": "tie"}') == "tie"
    assert parse_pairwise_choice("A") == "a"
    with pytest.raises(UnparseableReply):
        parse_pairwise_choice("Both are nice.")
    assert parse_fields("Question: Why?\nAnswer: Because.", ["question", "answer"]) == {"question": "Why?", "answer": "Because."}
    with pytest.raises(UnparseableReply, match="missing answer"):
        parse_fields('{"question": "Why?"}', ["question", "answer"])


def test_cot_and_evol_helpers():
    assert extract_answer("x\nSo the answer is 12 apples.\n", "So the answer is") == "12 apples."
    assert extract_answer("no marker", "So the answer is") is None
    assert normalize_answer("12 apples.") == "12" and normalize_answer("$1,200") == "1200"
    assert normalize_answer("Paris.") == normalize_answer("paris")
    assert copied_prompt_text("#Rewritten Prompt#: do x") == "rewritten prompt"
    assert failed_response("Sorry, I can't.").startswith("the model could not answer")
    assert failed_response("... the, of a!") == "the answer is only punctuation and stop words"
    assert failed_response("Leaves lose chlorophyll.") is None
