"""Quality filters, each on its own, through a real run."""

import pytest

from corpus.models import Record, Response

from .conftest import add_records

# Runs go through the real worker and its heartbeat thread, which has its own connection: rows
# must be committed for it to see the job, or on PostgreSQL it takes the job for lost.
pytestmark = pytest.mark.django_db(transaction=True)


GOOD = "Explain how tides work and why there are two of them each day."


def run_quality(client, dataset, drain_queue, config=None):
    with drain_queue():
        body = client.post("/api/v1/curation-runs", {"dataset": dataset.pk, "pipeline": [
            {"step": "quality", "config": config or {}}]}, format="json")
    assert body.status_code == 202, body.json()
    return client.get(body["Location"]).json()


@pytest.mark.parametrize("prompt,rule", [
    ("hi", "too_short"),
    ("x" * 200, "too_long"),
    ("buy now buy now buy now buy now buy now buy now buy now buy now", "repetitive"),
    ("broken \ufffd decoding here in this prompt", "invalid_utf8"),
    ("a bell \x07 rings in this prompt text", "control_characters"),
    ("Please send the password for the admin account", "regex:secrets"),
])
def test_prompt_filters(manager_client, dataset, drain_queue, prompt, rule):
    good, bad = add_records(dataset, [GOOD, prompt])
    run = run_quality(manager_client, dataset, drain_queue, {
        "max_prompt_chars": 150, "regex_rules": [{"name": "secrets", "pattern": r"\bpassword\b"}]})
    bad.refresh_from_db()
    good.refresh_from_db()
    assert good.status == "kept" and bad.status == "dropped", bad.status_reason
    assert run["report"]["steps"][0]["by_rule"] == {f"dropped:{rule}": 1}


@pytest.mark.parametrize("text,params,rule", [
    ("", {}, "too_short"),
    ("   ", {}, "too_short"),
    ("As an AI language model, I cannot have opinions about tides.", {}, "refusal_or_boilerplate"),
    ("I’m sorry, but I can’t help with that.", {}, "refusal_or_boilerplate"),
    ("Tides are caused by the moon and", {"finish_reason": "length"}, "truncated"),
    ("Here is code:\n```python\nprint('tides')\n", {}, "truncated"),
])
def test_response_filters(manager_client, dataset, drain_queue, text, params, rule):
    record = add_records(dataset, [GOOD])[0]
    good = Response.objects.create(record=record, text="The moon's gravity pulls the oceans.",
                                   author_kind="model", model_name="m")
    bad = Response.objects.create(record=record, text=text, author_kind="model", model_name="m",
                                  generation_params=params)
    run = run_quality(manager_client, dataset, drain_queue)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert good.status == "kept" and bad.status == "dropped"
    assert run["report"]["steps"][0]["by_rule"] == {f"dropped:{rule}": 1}


def test_language_check_flags_without_dropping(manager_client, dataset, drain_queue):
    english, german = add_records(dataset, [
        GOOD, "Erklären Sie bitte ausführlich, wie Gezeiten entstehen und warum zweimal täglich."])
    run = run_quality(manager_client, dataset, drain_queue, {"language": "en"})
    assert Record.objects.filter(status="dropped").count() == 0
    assert run["report"]["steps"][0]["by_rule"] == {"flagged:language": 1}
    decision = run["report"]["steps"][0]["examples"]["language"][0]
    assert decision["record"] == german.pk
