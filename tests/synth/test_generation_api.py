"""Generation jobs through the REST API and the real worker, against the loopback server:
each method's output and provenance, accounting, the cache, cancel, bad input, permissions."""

import pytest

from corpus.models import Feedback, Record, Response
from jobs.models import Job
from synth.models import CachedCompletion, DiscardedOutput, GenerationJob, Provider
from tests.synth.openai_loopback import Reply


def create(client, **body):
    return client.post("/api/v1/generation-jobs", body, format="json")


def run_job(client, drain_queue, **body):
    with drain_queue():
        reply = create(client, **body)
    assert reply.status_code == 202, reply.json()
    assert reply["Location"] == f"/api/v1/generation-jobs/{reply.json()['id']}"
    detail = client.get(reply["Location"]).json()
    return detail


def seed_records(dataset, prompts):
    return [Record.objects.create(dataset=dataset, prompt=p, source="import") for p in prompts]


def test_self_instruct_job_writes_novel_instructions_with_provenance(manager_client, dataset, provider, drain_queue):
    detail = run_job(manager_client, drain_queue, method="self_instruct", provider="loopback", dataset=dataset.pk,
                     config={"num_instructions": 5, "batch_size": 3, "seed": 7})
    assert detail["status"] == "succeeded", detail["error"]
    records = list(Record.objects.filter(dataset=dataset).order_by("id"))
    assert len(records) == 5 == detail["records_written"]
    prov = records[0].provenance
    assert prov["method"] == "self_instruct" and prov["provider"] == provider.pk
    assert prov["model"] == "test-model" and prov["job"] == detail["job"]
    assert prov["template_version"] == "self_instruct/1" and prov["parent_record"] is None
    assert prov["params"]["temperature"] == 0.7 and prov["seed_set"] == "builtin"
    assert len(prov["most_similar"]) == 10 and all(score <= 0.7 for _, score in prov["most_similar"])
    assert records[0].source == "synth:self_instruct" and records[0].job_id == detail["job"]
    assert detail["progress"]["done"] == 5 and detail["progress"]["total"] == 5
    assert detail["calls"] >= 2 and detail["prompt_tokens"] > 0 and detail["completion_tokens"] > 0
    assert detail["tokens_per_second"] > 0


def test_self_instruct_filters_keep_their_reasons(manager_client, dataset, db, drain_queue, loopback):
    replies = iter(["Draw a picture of a cat in the garden.", "Hi.", "Write a program that sorts numbers quickly.",
                    "Give three tips for staying healthy during a busy work week.",
                    "Name four rivers that flow through more than two European countries."])
    loopback.responder = lambda body: next(replies, "ok")
    Provider.objects.create(name="loopback", base_url=loopback.base_url, model="m", max_concurrency=1)
    detail = run_job(manager_client, drain_queue, method="self_instruct", provider="loopback", dataset=dataset.pk,
                     config={"num_instructions": 1, "batch_size": 1, "max_requests": 5})
    assert detail["status"] == "succeeded", detail["error"]
    assert list(Record.objects.filter(dataset=dataset).values_list("prompt", flat=True)) == [
        "Name four rivers that flow through more than two European countries."]
    reasons = list(DiscardedOutput.objects.order_by("id").values_list("reason", flat=True))
    assert "mentions 'draw'" in reasons[0] or "mentions 'picture'" in reasons[0]
    assert reasons[1].startswith("too short")
    assert "Write a program" in reasons[2]
    assert reasons[3].startswith("too similar") and "1.00" in reasons[3]
    page = manager_client.get(f"/api/v1/generation-jobs/{detail['id']}/discards").json()
    assert page["count"] == 4 and page["results"][0]["raw_text"] == "Draw a picture of a cat in the garden."


def test_responses_job_writes_n_candidates_per_prompt(manager_client, dataset, provider, drain_queue):
    records = seed_records(dataset, ["What is rain?", "Name a prime number."])
    detail = run_job(manager_client, drain_queue, method="responses", provider=provider.pk, dataset=dataset.pk,
                     config={"samples_per_temperature": 2, "temperatures": [0.2, 1.0], "params": {"max_tokens": 32}})
    assert detail["status"] == "succeeded", detail["error"]
    for record in records:
        responses = list(record.responses.order_by("id"))
        assert len(responses) == 4
        assert {r.generation_params["temperature"] for r in responses} == {0.2, 1.0}
        assert all(r.author_kind == "model" and r.model_name == "test-model" for r in responses)
        prov = responses[0].provenance
        assert prov["method"] == "responses" and prov["parent_record"] == record.pk and prov["job"] == detail["job"]
        assert {r.provenance["sample_index"] for r in responses} == {0, 1}
    assert detail["responses_written"] == 8 and detail["requests_total"] == 8


def test_judge_writes_ratings_and_swapped_pairwise_feedback(manager_client, dataset, provider, drain_queue):
    record = seed_records(dataset, ["What is rain?"])[0]
    first = Response.objects.create(record=record, text="Water falling from clouds.", author_kind="model", model_name="x")
    second = Response.objects.create(record=record, text="A dance.", author_kind="model", model_name="y")
    detail = run_job(manager_client, drain_queue, method="judge", provider="loopback", dataset=dataset.pk,
                     config={"mode": "both", "aspects": ["helpfulness", "honesty"]})
    assert detail["status"] == "succeeded", detail["error"]
    ratings = Feedback.objects.filter(record=record, kind="rating")
    assert ratings.count() == 4
    rating = ratings.first()
    assert rating.author_kind == "model" and rating.model_name == "test-model"
    assert rating.provenance["method"] == "llm_judge" and rating.provenance["provider"] == provider.pk
    assert rating.provenance["job"] == detail["job"] and rating.provenance["aspect"] in ("helpfulness", "honesty")
    assert 1 <= rating.payload["value"] <= 5 and rating.payload["rationale"] == "it addresses the instruction."
    pairwise = {f.provenance["swapped"]: f for f in Feedback.objects.filter(record=record, kind="pairwise")}
    assert set(pairwise) == {False, True}
    # The judge always answers "A": shown in order, A is `first`; swapped, A is `second`.
    assert pairwise[False].payload == {"a": first.pk, "b": second.pk, "choice": "a", "strength": None, "margin": None}
    assert pairwise[True].payload["choice"] == "b" and pairwise[True].provenance["shown"] == [second.pk, first.pk]


def test_unparseable_judge_reply_is_kept_with_its_raw_text(manager_client, dataset, db, drain_queue, loopback):
    loopback.responder = lambda body: "I think it is pretty good overall!"
    Provider.objects.create(name="loopback", base_url=loopback.base_url, model="m")
    record = seed_records(dataset, ["What is rain?"])[0]
    Response.objects.create(record=record, text="Water.", author_kind="model", model_name="x")
    detail = run_job(manager_client, drain_queue, method="judge", provider="loopback", dataset=dataset.pk,
                     config={"aspects": ["overall"]})
    assert detail["status"] == "succeeded" and detail["feedback_written"] == 0 and detail["discarded"] == 1
    discard = DiscardedOutput.objects.get()
    assert discard.stage == "judge.rating" and discard.raw_text == "I think it is pretty good overall!"
    assert "no rating" in discard.reason


def test_rerun_with_the_same_settings_costs_no_calls(manager_client, dataset, provider, drain_queue, loopback):
    seed_records(dataset, ["What is rain?", "What is snow?"])
    body = {"method": "responses", "provider": "loopback", "dataset": dataset.pk, "config": {"samples_per_temperature": 2}}
    first = run_job(manager_client, drain_queue, **body)
    calls = loopback.calls
    assert calls == 4 and first["calls"] == 4
    second = run_job(manager_client, drain_queue, **body)
    assert second["status"] == "succeeded" and loopback.calls == calls
    assert second["cache_hits"] == 4 and second["calls"] == 0 and second["responses_written"] == 4
    assert CachedCompletion.objects.count() == 4


def test_failing_endpoint_fails_the_job_and_writes_nothing(manager_client, dataset, db, drain_queue, loopback):
    loopback.responder = lambda body: Reply(status=401)
    Provider.objects.create(name="loopback", base_url=loopback.base_url, model="m")
    detail = run_job(manager_client, drain_queue, method="self_instruct", provider="loopback", dataset=dataset.pk,
                     config={"num_instructions": 2})
    assert detail["status"] == "failed"
    assert "refused the API key" in detail["error"] and "HTTP 401" in detail["error"]
    assert Record.objects.filter(dataset=dataset).count() == 0


def test_unreachable_endpoint_fails_the_job_clearly(manager_client, dataset, db, drain_queue):
    Provider.objects.create(name="nowhere", base_url="http://127.0.0.1:9/v1", model="m", max_retries=1)
    record = seed_records(dataset, ["What is rain?"])[0]
    detail = run_job(manager_client, drain_queue, method="responses", provider="nowhere", dataset=dataset.pk)
    assert detail["status"] == "failed" and "unreachable" in detail["error"]
    assert record.responses.count() == 0


def test_partial_output_is_removed_when_a_job_fails_half_way(manager_client, dataset, db, drain_queue, loopback):
    # The third reply is an error the engine may not retry: the job fails after writing two.
    loopback.script = [Reply(text="one"), Reply(text="two"), Reply(status=404)]
    Provider.objects.create(name="loopback", base_url=loopback.base_url, model="m", max_concurrency=1)
    records = seed_records(dataset, ["a?", "b?", "c?"])
    detail = run_job(manager_client, drain_queue, method="responses", provider="loopback", dataset=dataset.pk,
                     config={"samples_per_temperature": 1})
    assert detail["status"] == "failed" and "not found" in detail["error"]
    assert Response.objects.filter(record__in=records).count() == 0


@pytest.mark.parametrize("body, field", [
    ({"method": "nope"}, "method"),
    ({"provider": "missing"}, "provider"),
    ({"config": {"params": {"temperature": 5}}}, "config.params"),
    ({"config": {"num_instructions": 0}}, "config.num_instructions"),
    ({"config": {"surprise": 1}}, "config.surprise"),
    ({"config": {"params": {"top_k_sampling": 3}}}, "config.params"),
    ({"dataset": 999999}, "dataset"),
])
def test_bad_input_is_a_400_and_creates_nothing(manager_client, dataset, provider, body, field):
    payload = {"method": "self_instruct", "provider": "loopback", "dataset": dataset.pk, **body}
    reply = create(manager_client, **payload)
    assert reply.status_code == 400, reply.json()
    fields = [e["field"] for e in reply.json()["errors"]]
    assert any(f and f.startswith(field) for f in fields), reply.json()
    assert GenerationJob.objects.count() == 0 and Job.objects.count() == 0


def test_missing_api_key_variable_is_a_400(manager_client, dataset, db, monkeypatch):
    monkeypatch.delenv("WINNOW_TEST_MISSING_KEY", raising=False)
    Provider.objects.create(name="keyed", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="WINNOW_TEST_MISSING_KEY")
    reply = create(manager_client, method="responses", provider="keyed", dataset=dataset.pk)
    assert reply.status_code == 400
    assert "WINNOW_TEST_MISSING_KEY is not set" in reply.json()["detail"]
    assert Job.objects.count() == 0


def test_missing_api_key_at_run_time_fails_the_job(manager_client, dataset, db, drain_queue, monkeypatch):
    monkeypatch.setenv("WINNOW_TEST_KEY", "secret-value-123")
    Provider.objects.create(name="keyed", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="WINNOW_TEST_KEY")
    with drain_queue():
        reply = create(manager_client, method="responses", provider="keyed", dataset=dataset.pk)
        monkeypatch.delenv("WINNOW_TEST_KEY")
    detail = manager_client.get(reply["Location"]).json()
    assert detail["status"] == "failed" and "WINNOW_TEST_KEY is not set" in detail["error"]
    assert "secret-value-123" not in str(detail)


def test_cancel_a_queued_job(manager_client, dataset, provider):
    reply = create(manager_client, method="self_instruct", provider="loopback", dataset=dataset.pk)
    cancelled = manager_client.post(f"/api/v1/generation-jobs/{reply.json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_list_filters_and_methods_catalogue(manager_client, dataset, provider):
    create(manager_client, method="self_instruct", provider="loopback", dataset=dataset.pk)
    create(manager_client, method="responses", provider="loopback", dataset=dataset.pk)
    listing = manager_client.get("/api/v1/generation-jobs?method=responses").json()
    assert [j["method"] for j in listing["results"]] == ["responses"]
    methods = manager_client.get("/api/v1/generation-methods").json()
    names = {m["name"] for m in methods}
    assert {"self_instruct", "responses", "judge"} <= names
    schema = next(m for m in methods if m["name"] == "self_instruct")["config_schema"]
    assert schema["properties"]["rouge_threshold"]["default"] == 0.7


@pytest.mark.parametrize("role, expected", [("annotator", 403), ("norole", 403), ("anonymous", 401)])
def test_only_managers_may_use_generation(clients, dataset, provider, role, expected):
    client = clients[role]
    for reply in (client.get("/api/v1/generation-jobs"), client.get("/api/v1/providers"),
                  client.get("/api/v1/generation-methods"),
                  client.post("/api/v1/generation-jobs", {"method": "responses", "dataset": dataset.pk}, format="json")):
        assert reply.status_code == expected
    assert GenerationJob.objects.count() == 0


def test_admin_role_may_use_generation(clients, dataset, provider):
    assert create(clients["admin"], method="responses", provider="loopback", dataset=dataset.pk).status_code == 202
