"""A provider's API key is used on the wire and nowhere else: not in the database, not in the
logs, not in an API response, even when the endpoint quotes it back in an error."""

import io
import json
import logging
import secrets

import pytest
from django.core.management import call_command

from corpus.models import Dataset, Record
from jobs.models import JobLogEntry
from synth.engine import redact
from synth.models import Provider
from tests.synth.openai_loopback import LoopbackServer, Reply
from tests.synth.test_generation_api import run_job
from tests.synth.conftest import method_aware_reply

KEY_ENV = "WINNOW_TEST_PROVIDER_KEY"


def seed(dataset, prompts):
    Record.objects.bulk_create(Record(dataset=dataset, prompt=p) for p in prompts)


def everything_served(client, detail) -> str:
    """Every API body a manager could read about the provider and the job."""
    bodies = [client.get(url).content.decode() for url in (
        "/api/v1/providers", f"/api/v1/generation-jobs/{detail['id']}", "/api/v1/generation-jobs",
        f"/api/v1/jobs/{detail['job']}", "/api/v1/jobs", f"/api/v1/generation-jobs/{detail['id']}/discards")]
    return "\n".join(bodies)


def database_dump() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("text, secret, expected", [
    ("Incorrect API key provided: sk-abcdef1234567890.", "sk-abcdef1234567890", "Incorrect API key provided: [redacted key]."),
    ("key sk-abcdef12****7890 is wrong", "sk-abcdef1234567890", "key [redacted key]****7890 is wrong"),
    ("nothing to hide", "sk-abcdef1234567890", "nothing to hide"),
    ("no-key is fine", "no-key", "no-key is fine"),
])
def test_redact(text, secret, expected):
    assert redact(text, secret) == expected


def test_the_key_goes_on_the_wire_and_nowhere_else(manager_client, dataset, drain_queue, monkeypatch, caplog):
    key = "sk-test-" + secrets.token_hex(24)
    monkeypatch.setenv(KEY_ENV, key)
    caplog.set_level(logging.DEBUG)
    seed(dataset, ["What is rain?", "Name a prime number."])
    with LoopbackServer(method_aware_reply) as good:
        Provider.objects.create(name="keyed", base_url=good.base_url, model="m", api_key_env=KEY_ENV)
        ok = run_job(manager_client, drain_queue, method="responses", provider="keyed", dataset=dataset.pk,
                     config={"samples_per_temperature": 1, "temperatures": [0.7]})
        assert ok["status"] == "succeeded", ok["error"]
        assert {entry["authorization"] for entry in good.log} == {f"Bearer {key}"}  # it was used

    # An endpoint that rejects the key and quotes it back, as some do.
    quoted = json.dumps({"error": {"message": f"Incorrect API key provided: {key}. You can find your key "
                                              f"at ...", "type": "invalid_request_error"}}).encode()
    other = Dataset.objects.create(name="other", owner=dataset.owner)
    seed(other, ["Why is the sea salty?"])  # new prompts: nothing cached
    with LoopbackServer(script=[Reply(401, body=quoted)] * 6) as bad:
        Provider.objects.filter(name="keyed").update(base_url=bad.base_url, max_retries=0)
        failed = run_job(manager_client, drain_queue, method="responses", provider="keyed", dataset=other.pk,
                         config={"samples_per_temperature": 1, "temperatures": [0.7]})
        provider = Provider.objects.get(name="keyed")
        diagnoses = [manager_client.post(f"/api/v1/providers/{provider.pk}/health").content.decode(),
                     manager_client.post(f"/api/v1/providers/{provider.pk}/try", {"prompt": "hi"},
                                         format="json").content.decode()]
        assert bad.log and all(entry["authorization"] == f"Bearer {key}" for entry in bad.log)

    served = everything_served(manager_client, failed) + "\n".join(diagnoses)
    assert all("[redacted key]" in diagnosis for diagnosis in diagnoses), diagnoses
    assert "HTTP 401" in served and "[redacted key]" in served  # the error is reported ...
    logs = caplog.text + "\n".join(JobLogEntry.objects.values_list("message", flat=True))
    for where, text in (("API", served), ("logs", logs), ("database", database_dump())):
        assert key not in text and key[-12:] not in text, f"the key leaked into the {where}"  # ... the key is not
