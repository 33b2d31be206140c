"""Import over HTTP (multipart -> 202 + job, run by the real worker) and the jobs endpoints."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from corpus.models import Record
from jobs.models import Job, JobLogEntry

pytestmark = pytest.mark.django_db

DOLLY = b"\n".join(json.dumps(row).encode() for row in [
    {"instruction": "When did Virgin Australia start operating?", "context": "Since 2000.",
     "response": "31 August 2000.", "category": "closed_qa"},
    {"instruction": "Which is a species of fish? Tope or Rope", "context": "", "response": "Tope",
     "category": "classification"},
]) + b"\n"


def upload(client, dataset, content=DOLLY, name="dolly.jsonl", **fields):
    return client.post(
        f"/api/v1/datasets/{dataset.pk}/import",
        {"file": SimpleUploadedFile(name, content), **fields},
        format="multipart",
    )


def test_import_returns_202_and_the_worker_runs_it(manager_client, dataset, drain_queue, settings):
    with drain_queue():
        response = upload(manager_client, dataset)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and response["Location"] == f"/api/v1/jobs/{body['id']}"
    job = manager_client.get(f"/api/v1/jobs/{body['id']}").json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 2, "total": 2, "fraction": 1.0, "stage": "importing"}
    assert job["result"]["records"] == 2 and "imported 2 records" in job["log_tail"][-1]["message"]
    assert Record.objects.filter(dataset=dataset, metadata__category="closed_qa").count() == 1
    assert not list((settings.MEDIA_ROOT / "imports").rglob("*.jsonl"))  # the upload is cleaned up


def test_import_with_bad_rows_fails_with_a_line_report(manager_client, dataset, drain_queue):
    with drain_queue():
        body = upload(manager_client, dataset, content=DOLLY + b"{broken\n").json()
    job = manager_client.get(f"/api/v1/jobs/{body['id']}").json()
    assert job["status"] == "failed" and "nothing was written" in job["error"]
    assert job["result"]["errors"][0]["line"] == 3
    assert Record.objects.count() == 0


def test_import_skip_invalid_and_named_format_and_shape(manager_client, dataset, drain_queue):
    csv = b"instruction,input,output\nSay hi,,Hi\n,,missing instruction\n"
    with drain_queue():
        body = upload(manager_client, dataset, content=csv, name="data.txt", format="csv",
                      shape="alpaca", skip_invalid="true", response_author_kind="model",
                      model_name="text-davinci-003", source="alpaca").json()
    job = Job.objects.get(pk=body["id"])
    assert job.status == "succeeded" and job.result["invalid"] == 1 and job.result["records"] == 1
    record = Record.objects.get()
    assert record.source == "alpaca"
    assert record.responses.get().model_name == "text-davinci-003"


def test_reimport_over_http_does_not_duplicate(manager_client, dataset, drain_queue):
    rows = b"".join(json.dumps({"id": f"r{i}", "text": f"doc {i}"}).encode() + b"\n" for i in range(5))
    for _ in range(2):
        with drain_queue():
            upload(manager_client, dataset, content=rows, name="docs.jsonl")
    assert Record.objects.filter(dataset=dataset).count() == 5
    assert Job.objects.order_by("-id").first().result["skipped_existing"] == 5


@pytest.mark.parametrize("fields,content,name,field", [
    ({}, b"", "empty.jsonl", "file"),
    ({}, b"hello", "notes.txt", "format"),
    ({"format": "xml"}, DOLLY, "d.jsonl", "format"),
    ({"shape": "orca"}, DOLLY, "d.jsonl", "shape"),
    ({"skip_invalid": "perhaps"}, DOLLY, "d.jsonl", "skip_invalid"),
    ({"response_author_kind": "alien"}, DOLLY, "d.jsonl", "response_author_kind"),
])
def test_import_bad_requests_are_400_and_create_no_job(manager_client, dataset, fields, content, name, field):
    response = upload(manager_client, dataset, content=content, name=name, **fields)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not Job.objects.exists()


def test_import_without_a_file(manager_client, dataset):
    response = manager_client.post(f"/api/v1/datasets/{dataset.pk}/import", {}, format="multipart")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "file"
    json_body = manager_client.post(f"/api/v1/datasets/{dataset.pk}/import", {"file": "x"}, format="json")
    assert json_body.status_code == 415


def test_upload_over_the_cap_is_413(manager_client, dataset, settings):
    settings.WINNOW_MAX_UPLOAD_BYTES = 100
    response = upload(manager_client, dataset, content=DOLLY)
    assert response.status_code == 413
    assert "WINNOW_MAX_UPLOAD_BYTES" in response.json()["detail"]
    big = manager_client.generic(
        "POST", f"/api/v1/datasets/{dataset.pk}/import", io.BytesIO(b"x" * 10).read(),
        content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(10**9),
    )
    assert big.status_code == 413
    assert not Job.objects.exists()


def test_import_into_missing_dataset_is_404(manager_client):
    assert manager_client.post("/api/v1/datasets/999/import", {}, format="multipart").status_code == 404


# -- jobs --------------------------------------------------------------------------------


def test_cancel_a_queued_job(manager_client, dataset, django_capture_on_commit_callbacks):
    job = Job.objects.get(pk=upload(manager_client, dataset).json()["id"])
    response = manager_client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = manager_client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert again.json()["status"] == "cancelled"
    assert JobLogEntry.objects.filter(job=job, message__contains="cancelled").exists()


def test_job_list_filters(manager_client, dataset, drain_queue):
    with drain_queue():
        upload(manager_client, dataset)
        upload(manager_client, dataset, content=b"{bad\n")
    listed = manager_client.get("/api/v1/jobs").json()["results"]
    assert [j["status"] for j in listed] == ["failed", "succeeded"]
    failed = manager_client.get("/api/v1/jobs?status=failed").json()["results"]
    assert len(failed) == 1
    assert len(manager_client.get(f"/api/v1/jobs?subject=dataset:{dataset.pk}").json()["results"]) == 2
    assert manager_client.get("/api/v1/jobs?status=exploded").status_code == 400
    assert manager_client.get("/api/v1/jobs/424242").status_code == 404
