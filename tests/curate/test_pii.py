"""PII: every entity planted and redacted, nothing found in PII-free technical text, the
review queue over REST."""

import pytest

from corpus.models import Record
from curate import pii
from curate.models import PIIFinding

from .conftest import add_records

PLANTED = {
    "EMAIL": "Write to maria.lopez@example-mail.com for details.",
    "PHONE": "Call me on +1 (415) 555-0132 tomorrow.",
    "CREDIT_CARD": "My card number is 4111 1111 1111 1111 thanks.",
    "IBAN": "Transfer it to DE89370400440532013000 please.",
    "IP_ADDRESS": "The server at 93.184.216.34 stopped answering.",
    "US_SSN": "Her social security number is 536-22-1234.",
    "PERSON": "Yesterday Jonathan Whitaker signed the contract.",
    "URL": "Details are at https://internal.example.org/reports/q3 now.",
    "SECRET": "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE before running.",
}
MORE = [
    ("CREDIT_CARD", "Mastercard 2221 0000 0000 0009 expires soon.", "2221 0000 0000 0009"),
    ("SECRET", "client = OpenAI(api_key='sk-proj-abcdefghijklmnopqrstuvwx12')",
     "sk-proj-abcdefghijklmnopqrstuvwx12"),
    ("SECRET", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("SECRET", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
     "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"),
]
PII_FREE = [
    "Upgrade to version 1.2.3.4 of the driver, then restart the service.",
    "Set the subnet mask to 255.255.255.0 and the gateway to 192.168.1.1 on the LAN.",
    "Order part no. 123-45-6789 from the catalogue; order 123456789 ships Monday.",
    "Microsoft and Google released updates on March 3, 2024 for Windows and Android.",
    "Use numpy.array([1, 2, 3]) and call np.mean(x, axis=0) for the average.",
    "The HTTP server listens on port 8080; docker run -p 8080:80 nginx:1.25 starts it.",
    "Python 3.11 added tomllib; pip install requests==2.31.0 pins the version.",
    "Kubernetes pods restart when the liveness probe fails three times in a row.",
    "The function returns -1 when the index is out of range, else 0.",
    "Compile with gcc -O2 -Wall main.c -o main and run ./main 10 20.",
    "Read the TOKEN into a `Vec`, map std::io::Error and enum.ErrorKind, then export $HOME as JSON.",
    "- Remove the stale lock file\n- [Revert the cache change][12]\n| Parquet | `.pq` |",
]
# Prose with names far apart, at line breaks, after initials and titles: NER over the windows
# around candidate words must find what NER over the whole text finds.
NAMES_PROSE = (
    "the queue is drained by the worker when the load is low and the reports are built later "
    "in the background. The request was approved by Karen Whitfield after a short review, and "
    "the worker retried the job twice before anyone was told. Patch by John\n    Marriott. "
    "the cluster is watched by the monitoring service and the errors are retried with a delay "
    "so that users see fast responses; the form was signed by J. Smith on Monday while "
    "Dr. Watson read the logs. Yesterday Jonathan Whitaker signed the contract with Priya "
    "Raman and the team moved on to other work that had waited for a week or more.")


@pytest.mark.parametrize("entity", list(PLANTED))
def test_each_entity_is_found(entity):
    text = PLANTED[entity]
    found = pii.detect_batch([text])[0]
    assert entity in {f.entity for f in found}, found


@pytest.mark.parametrize("entity,text,span", MORE)
def test_mastercard_2_series_and_secrets(entity, text, span):
    found = pii.detect_batch([text])[0]
    assert any(f.entity == entity and text[f.start:f.end] == span for f in found), found


def test_no_pii_in_pii_free_technical_text():
    found = pii.detect_batch(PII_FREE)
    assert all(not f for f in found), [(t, f) for t, f in zip(PII_FREE, found) if f]


@pytest.mark.parametrize("text,name", [
    # The small model calls this one ORG.
    ("The request was approved yesterday by Stephanie Young after a short review.", "Stephanie Young"),
    ("The form was signed by J. Smith on Monday.", "J. Smith"),
    ("Patch by John\n    Marriott.", "John\n    Marriott"),
])
def test_names_after_initials_across_lines_and_that_ner_calls_organisations(text, name):
    found = pii.detect_batch([text])[0]
    assert [text[f.start:f.end] for f in found if f.entity == "PERSON"] == [name], found


def test_ner_over_windows_finds_what_ner_over_the_whole_text_finds():
    nlp = pii.analyzer().nlp_engine.nlp["en"]
    texts = [NAMES_PROSE, *PLANTED.values(), *PII_FREE]
    whole = [[(ent.start_char, ent.end_char) for ent in doc.ents
              if pii._person_label(text, ent.start_char, ent.end_char, ent.label_)
              and pii._name_kept(text, ent.start_char, ent.end_char)]
             for text, doc in zip(texts, nlp.pipe(texts))]
    windows = [[(ent.start_char, ent.end_char) for ent in ents
                if pii._name_kept(text, ent.start_char, ent.end_char)]
               for text, ents in zip(texts, pii._person_entities(nlp, texts))]
    assert windows == whole
    assert len(whole[0]) == 6, [NAMES_PROSE[a:b] for a, b in whole[0]]
    # NER reads a fraction of the prose, and nothing of text with no capitalised word past a
    # sentence's first.
    assert sum(b - a for a, b in pii._name_windows(NAMES_PROSE)) < len(NAMES_PROSE) / 2
    assert pii._name_windows("the worker processes it later. Then the queue drains.") == []


def test_private_ips_are_configurable():
    text = "Connect to 10.1.2.3 from the office."
    assert pii.detect_batch([text])[0] == []
    assert [f.entity for f in pii.detect_batch([text], private_ips=True)[0]] == ["IP_ADDRESS"]


def test_policies_redact_mask_and_consistent_fake():
    text = "Mail ann@example.com and ann@example.com, not bob@example.com."
    found = pii.detect_batch([text], entities=("EMAIL",))[0]
    redacted, _ = pii.apply_policies(text, found, {"EMAIL": "redact"})
    assert redacted == "Mail <EMAIL> and <EMAIL>, not <EMAIL>."
    masked, _ = pii.apply_policies(text, found, {"EMAIL": "mask"})
    assert "***@*******.***" in masked
    faked, applied = pii.apply_policies(text, found, {"EMAIL": "fake"}, salt="s")
    fakes = [replacement for _, _, replacement in applied]
    assert fakes[0] == fakes[1] != fakes[2] and "ann@" not in faked


def test_detection_across_processes_equals_one_process():
    texts = list(PLANTED.values()) * 3
    assert pii.detect_many(texts, processes=2, chunk=5) == pii.detect_many(texts, processes=1)


def test_tldextract_never_reaches_the_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    extractor = pii._offline_tldextract()
    assert extractor("mail.example.co.uk").suffix == "co.uk"


# Committed rows: the job's heartbeat thread (its own connection) must see the job it beats
# for, or on PostgreSQL it takes the job for lost and cancels it mid-run.
@pytest.mark.django_db(transaction=True)
def test_pii_run_redacts_and_review_queue(manager_client, clients, dataset, drain_queue):
    records = add_records(dataset, [PLANTED["EMAIL"], PLANTED["PERSON"], PII_FREE[0]],
                          [PLANTED["PHONE"], None, None])
    with drain_queue():
        body = manager_client.post("/api/v1/curation-runs", {"dataset": dataset.pk, "pipeline": [
            {"step": "pii", "config": {"policies": {"PERSON": "fake"}}}]}, format="json").json()
    run = manager_client.get(f"/api/v1/curation-runs/{body['id']}").json()
    assert run["status"] == "succeeded", run["job"]["error"]
    assert run["report"]["steps"][0]["entities"] == {
        "EMAIL": 1, "PERSON": 1, "PHONE": 1}
    email_record = Record.objects.get(pk=records[0].pk)
    assert email_record.prompt == "Write to <EMAIL> for details."
    assert records[0].responses.get().text == "Call me on <PHONE> tomorrow."
    person = Record.objects.get(pk=records[1].pk).prompt
    assert "Jonathan" not in person and person.startswith("Yesterday ")

    queue = manager_client.get("/api/v1/pii-findings?review_status=pending").json()["results"]
    assert len(queue) == 3 and {f["entity_type"] for f in queue} == {"EMAIL", "PERSON", "PHONE"}
    email = next(f for f in queue if f["entity_type"] == "EMAIL")
    assert email["original"] == "maria.lopez@example-mail.com" and email["score"] > 0.5
    edited = manager_client.post(f"/api/v1/pii-findings/{email['id']}/review",
                                 {"decision": "edit", "replacement": "[email removed]"}, format="json")
    assert edited.status_code == 200 and edited.json()["review_status"] == "edited"
    assert Record.objects.get(pk=records[0].pk).prompt == "Write to [email removed] for details."
    phone = next(f for f in queue if f["entity_type"] == "PHONE")
    assert manager_client.post(f"/api/v1/pii-findings/{phone['id']}/review",
                               {"decision": "reject"}, format="json").status_code == 200
    assert records[0].responses.get().text == PLANTED["PHONE"]
    bad = manager_client.post(f"/api/v1/pii-findings/{phone['id']}/review", {"decision": "edit"},
                              format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "replacement"
    assert manager_client.post(f"/api/v1/pii-findings/{phone['id']}/review",
                               {"decision": "shred"}, format="json").status_code == 400
    assert manager_client.get("/api/v1/pii-findings?review_status=nope").status_code == 400
    assert clients["annotator"].get("/api/v1/pii-findings").status_code == 403
    assert clients["annotator"].post(f"/api/v1/pii-findings/{phone['id']}/review",
                                     {"decision": "approve"}, format="json").status_code == 403

    # Reverting the run puts the originals back, whatever the review did.
    assert manager_client.post(f"/api/v1/curation-runs/{run['id']}/revert").status_code == 200
    assert Record.objects.get(pk=records[0].pk).prompt == PLANTED["EMAIL"]
    assert Record.objects.get(pk=records[1].pk).prompt == PLANTED["PERSON"]
    assert manager_client.get("/api/v1/pii-findings").json()["results"] == []
    assert PIIFinding.objects.count() == 3
