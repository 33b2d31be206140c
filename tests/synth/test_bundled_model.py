"""Every method end to end against the REAL bundled SmolLM2-135M-Instruct, served by a real
`transformers serve` process, through the `openai` client and the real worker.

Counts and max_tokens are tiny: on two shared CPU cores the model makes a few tokens a second.
A 135M model follows formats loosely, so these tests check that every reply was either kept
(with full provenance) or discarded with its raw text and a reason, never lost.
"""

import pytest

from corpus.models import Feedback, Record, Response
from synth.generation import create_generation_job
from synth.models import DiscardedOutput

# Committed rows (transactional_db): these jobs outlive a heartbeat, and the heartbeat thread
# (its own connection) must see the job row or it takes the job to be lost and stops it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.usefixtures("transactional_db")]

MODEL_NAME = "SmolLM2-135M-Instruct"


def run(method, provider, dataset, drain_queue, **config):
    with drain_queue():
        generation = create_generation_job(method=method, provider=provider, dataset=dataset, config=config)
    generation.refresh_from_db()
    generation.job.refresh_from_db()
    assert generation.job.status == "succeeded", (generation.job.error, list(generation.job.log_entries.values_list("message", flat=True)))
    assert generation.calls >= 1 and generation.completion_tokens > 0
    return generation


def assert_provenance(prov, provider, generation, method):
    assert prov["method"] == method and prov["provider"] == provider.pk and prov["job"] == generation.job_id
    assert prov["model"] == provider.model and prov["template_version"].startswith(method)


def test_self_instruct_with_the_bundled_model(bundled_provider, dataset, drain_queue):
    generation = run("self_instruct", bundled_provider, dataset, drain_queue, num_instructions=2, batch_size=2,
                     max_requests=4, params={"max_tokens": 32})
    records = list(Record.objects.filter(job=generation.job))
    discards = list(DiscardedOutput.objects.filter(generation=generation))
    assert len(records) + len(discards) >= 1
    for record in records:
        assert_provenance(record.provenance, bundled_provider, generation, "self_instruct")
        assert len(record.prompt.split()) >= 4 and all(s <= 0.7 for _, s in record.provenance["most_similar"])
    assert all(d.reason and d.raw_text for d in discards if d.stage != "request")


def test_responses_and_judge_with_the_bundled_model(bundled_provider, dataset, drain_queue):
    record = Record.objects.create(dataset=dataset, prompt="Name one colour of the sky.")
    generation = run("responses", bundled_provider, dataset, drain_queue, samples_per_temperature=2,
                     params={"max_tokens": 16})
    responses = list(record.responses.all())
    assert len(responses) == 2 and all(r.text for r in responses)
    assert all(r.model_name == MODEL_NAME and r.author_kind == "model" for r in responses)
    assert_provenance(responses[0].provenance, bundled_provider, generation, "responses")

    judge = run("judge", bundled_provider, dataset, drain_queue, mode="both", aspects=["helpfulness"],
                params={"max_tokens": 24})
    feedback = Feedback.objects.filter(record=record)
    discards = DiscardedOutput.objects.filter(generation=judge)
    assert feedback.count() + discards.count() == 4  # 2 ratings + 2 pairwise (one swapped)
    for row in feedback:
        assert row.author_kind == "model" and row.model_name == MODEL_NAME
        assert row.provenance["method"] == "llm_judge" and row.provenance["job"] == judge.job_id
    assert all(d.raw_text and d.reason for d in discards)


def test_evol_instruct_with_the_bundled_model(bundled_provider, dataset, drain_queue):
    source = Record.objects.create(dataset=dataset, prompt="Explain what a rainbow is.")
    generation = run("evol_instruct", bundled_provider, dataset, drain_queue, operations=["add_constraints"],
                     params={"max_tokens": 32}, response_max_tokens=16)
    evolved = list(Record.objects.filter(job=generation.job))
    discards = list(DiscardedOutput.objects.filter(generation=generation))
    assert len(evolved) + len(discards) == 1
    for record in evolved:
        assert record.provenance["parent_record"] == source.pk and record.prompt != source.prompt


def test_cot_with_the_bundled_model(bundled_provider, dataset, drain_queue):
    record = Record.objects.create(dataset=dataset, prompt="What is 3 + 4?", metadata={"answer": "7"})
    generation = run("cot", bundled_provider, dataset, drain_queue, k=2, params={"max_tokens": 40})
    kept = list(Response.objects.filter(record=record, provenance__job=generation.job_id))
    discards = list(DiscardedOutput.objects.filter(generation=generation))
    assert len(kept) + len(discards) == 2
    for response in kept:
        assert response.provenance["verified_by"] == "reference"


def test_grounded_generation_with_the_bundled_model(bundled_provider, dataset, drain_queue):
    text = "Honey bees live in colonies. A colony has one queen, thousands of workers and some drones."
    generation = run("grounded", bundled_provider, dataset, drain_queue, documents=[{"title": "Bees", "text": text}],
                     params={"max_tokens": 48})
    records = list(Record.objects.filter(job=generation.job))
    discards = list(DiscardedOutput.objects.filter(generation=generation))
    assert len(records) + len(discards) == 1
    for record in records:
        assert record.context == text and record.responses.count() == 1


def test_health_and_try_it_on_the_bundled_model(bundled_provider, manager_client):
    health = manager_client.post(f"/api/v1/providers/{bundled_provider.pk}/health").json()
    assert health["ok"] is True, health
    tried = manager_client.post(f"/api/v1/providers/{bundled_provider.pk}/try",
                                {"prompt": "Say hi", "max_tokens": 4}, format="json").json()
    assert tried["ok"] is True and tried["text"]


def test_serve_a_registered_model_as_a_provider(manager_client, db):
    """What issue 8 needs of a trained model: serve its folder and generate with it. The
    bundled model's folder stands in for a trained one (same format: a full HF folder)."""
    from corpus.bundled_model import bundled_model_dir
    from corpus.models import RegisteredModel
    from synth.models import ModelServer, Provider
    from synth.serving import server_alive, stop_model_server, wait_until_serving

    model = RegisteredModel.objects.create(name="my-trained-model", origin="trained", path=str(bundled_model_dir()))
    reply = manager_client.post("/api/v1/providers/serve-model", {"model": "my-trained-model"}, format="json")
    assert reply.status_code == 201, reply.json()
    provider = Provider.objects.get(pk=reply.json()["id"])
    server = ModelServer.objects.get(provider=provider)
    try:
        assert provider.registered_model == model and provider.model == str(bundled_model_dir())
        wait_until_serving(provider.base_url, timeout=300)
        tried = manager_client.post(f"/api/v1/providers/{provider.pk}/try", {"prompt": "Hi", "max_tokens": 4},
                                    format="json").json()
        assert tried["ok"] is True and tried["text"], tried
        assert manager_client.get(f"/api/v1/providers/{provider.pk}").json()["server"]["alive"] is True
    finally:
        stop_model_server(server)
    assert not server_alive(server)
