"""Providers through the REST API: CRUD, validation, health, try it, the key never stored."""

import pytest

from corpus.models import Dataset, RegisteredModel
from synth.generation import create_generation_job
from synth.models import Provider


def provider_body(**overrides):
    body = {"name": "openai-mini", "base_url": "https://api.example.com/v1", "model": "mini",
            "api_key_env": "EXAMPLE_API_KEY", "default_params": {"temperature": 0.5, "max_tokens": 128},
            "max_concurrency": 16, "requests_per_minute": 500, "tokens_per_minute": 200000,
            "price_prompt_per_1k": "0.000150", "price_completion_per_1k": "0.000600"}
    body.update(overrides)
    return body


def test_manager_creates_reads_updates_and_deletes_a_provider(manager_client, db, monkeypatch):
    monkeypatch.setenv("EXAMPLE_API_KEY", "sk-test-secret")
    created = manager_client.post("/api/v1/providers", provider_body(), format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["api_key_env"] == "EXAMPLE_API_KEY" and data["api_key_set"] is True
    assert "sk-test-secret" not in str(data)
    row = Provider.objects.get(pk=data["id"])
    assert "sk-test-secret" not in str(row.__dict__)
    patched = manager_client.patch(f"/api/v1/providers/{row.pk}", {"max_concurrency": 2}, format="json")
    assert patched.status_code == 200 and patched.json()["max_concurrency"] == 2
    listing = manager_client.get("/api/v1/providers").json()
    assert [p["name"] for p in listing["results"]] == ["openai-mini"]
    assert manager_client.delete(f"/api/v1/providers/{row.pk}").status_code == 204
    assert not Provider.objects.exists()


@pytest.mark.parametrize("overrides, field", [
    ({"api_key_env": "sk-abc123secret"}, "api_key_env"),
    ({"api_key_env": "has spaces"}, "api_key_env"),
    ({"default_params": {"temperature": 9}}, "default_params"),
    ({"default_params": {"best_of": 3}}, "default_params"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"base_url": "not a url"}, "base_url"),
    ({"price_prompt_per_1k": "-1"}, "price_prompt_per_1k"),
])
def test_invalid_provider_is_a_400(manager_client, db, overrides, field):
    reply = manager_client.post("/api/v1/providers", provider_body(**overrides), format="json")
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["field"] == field
    assert not Provider.objects.exists()


def test_a_provider_with_jobs_is_kept(manager_client, provider):
    dataset = Dataset.objects.create(name="d")
    create_generation_job(method="responses", provider=provider, dataset=dataset, enqueue=False)
    reply = manager_client.delete(f"/api/v1/providers/{provider.pk}")
    assert reply.status_code == 400 and "generation jobs used this provider" in reply.json()["detail"]


def test_health_and_try_it(manager_client, provider, loopback):
    health = manager_client.post(f"/api/v1/providers/{provider.pk}/health").json()
    assert health["ok"] is True and health["latency_s"] >= 0
    tried = manager_client.post(f"/api/v1/providers/{provider.pk}/try", {"prompt": "Tell me a joke"}, format="json").json()
    assert tried["ok"] is True and tried["text"].startswith("Here is an answer")
    assert loopback.log[-1]["body"]["messages"] == [{"role": "user", "content": "Tell me a joke"}]
    bad = manager_client.post(f"/api/v1/providers/{provider.pk}/try", {"prompt": ""}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "prompt"


def test_health_of_an_unreachable_provider_says_why(manager_client, db):
    provider = Provider.objects.create(name="nowhere", base_url="http://127.0.0.1:9/v1", model="m")
    health = manager_client.get(f"/api/v1/providers/{provider.pk}/health").json()
    assert health["ok"] is False and health["error_kind"] == "connection"


def test_serve_model_rejects_unknown_and_adapter_models(manager_client, db, tmp_path):
    reply = manager_client.post("/api/v1/providers/serve-model", {"model": "nope"}, format="json")
    assert reply.status_code == 400 and reply.json()["errors"][0]["field"] == "model"
    base = RegisteredModel.objects.create(name="base", origin="local", path=str(tmp_path))
    adapter = RegisteredModel.objects.create(name="lora", origin="trained", format="adapter", path=str(tmp_path), base=base)
    reply = manager_client.post("/api/v1/providers/serve-model", {"model": adapter.pk}, format="json")
    assert reply.status_code == 400 and "only full-format models" in reply.json()["detail"]
    reply = manager_client.post("/api/v1/providers/serve-model", {"model": "base"}, format="json")
    assert reply.status_code == 400 and "no config.json" in reply.json()["detail"]
    assert not Provider.objects.exists()


def test_annotators_cannot_see_providers(clients, provider):
    assert clients["annotator"].get(f"/api/v1/providers/{provider.pk}").status_code == 403
    assert clients["annotator"].post(f"/api/v1/providers/{provider.pk}/health").status_code == 403


@pytest.mark.parametrize("body", ["[null, null]", "7", '"model"'])
def test_try_and_serve_model_answer_a_non_object_body_with_400(manager_client, provider, body):
    # Found by schemathesis: a JSON array body crashed both actions (a 500).
    for url in (f"/api/v1/providers/{provider.pk}/try", "/api/v1/providers/serve-model"):
        response = manager_client.post(url, data=body, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert response.json()["detail"] == "the body must be a JSON object"
