"""The admin screens: create and launch a generation job, watch it, browse its output; try a
provider and check its health."""

import pytest

from corpus.models import Dataset, Record
from synth.models import GenerationJob


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    return client


def test_create_launch_and_watch_a_generation_job(admin_client, provider, drain_queue):
    page = admin_client.get("/admin/synth/generationjob/add/")
    assert page.status_code == 200 and b"self_instruct" in page.content and b"rouge_threshold" in page.content
    with drain_queue():
        reply = admin_client.post("/admin/synth/generationjob/add/", {
            "method": "self_instruct", "provider": provider.pk, "new_dataset": "from-admin",
            "config": '{"num_instructions": 2}'})
    generation = GenerationJob.objects.get()
    assert reply.status_code == 302 and reply["Location"].endswith(f"/admin/synth/generationjob/{generation.pk}/change/")
    page = admin_client.get(reply["Location"])
    assert page.status_code == 200 and b'id="progress-bar"' in page.content
    assert f"/api/v1/generation-jobs/{generation.pk}".encode() in page.content
    # The live bar polls the API with the admin's session.
    assert admin_client.get(f"/api/v1/generation-jobs/{generation.pk}").json()["status"] == "succeeded"
    records = admin_client.get(f"/admin/corpus/record/?job__exact={generation.job_id}")
    assert records.status_code == 200
    prompt = Record.objects.filter(dataset__name="from-admin").first().prompt
    assert prompt[:40].encode() in records.content
    assert admin_client.get("/admin/synth/generationjob/").status_code == 200


def test_admin_form_reports_bad_config(admin_client, provider):
    dataset = Dataset.objects.create(name="d")
    reply = admin_client.post("/admin/synth/generationjob/add/", {
        "method": "self_instruct", "provider": provider.pk, "dataset": dataset.pk,
        "config": '{"num_instructions": -1}'})
    assert reply.status_code == 200 and b"config.num_instructions" in reply.content
    reply = admin_client.post("/admin/synth/generationjob/add/", {
        "method": "self_instruct", "provider": provider.pk, "dataset": dataset.pk, "config": "{nope"})
    assert reply.status_code == 200 and b"not valid JSON" in reply.content
    assert not GenerationJob.objects.exists()


def test_try_it_and_health_check(admin_client, provider):
    page = admin_client.get(f"/admin/synth/provider/{provider.pk}/try/")
    assert page.status_code == 200
    tried = admin_client.post(f"/admin/synth/provider/{provider.pk}/try/", {"prompt": "Tell me about owls", "try": "1"})
    assert b'id="try-result"' in tried.content and b"Here is an answer" in tried.content
    health = admin_client.post(f"/admin/synth/provider/{provider.pk}/try/", {"health": "1"})
    assert b'id="try-result"' in health.content
    listing = admin_client.post("/admin/synth/provider/", {"action": "check_health_action", "_selected_action": [provider.pk]},
                                follow=True)
    assert any(str(m).startswith("loopback: healthy") for m in listing.context["messages"])
