"""The snapshots REST API through the real worker: build, list, detail, range downloads, bad
recipes, and who may do what."""

import hashlib
import json

import pytest

from corpus.models import Snapshot
from tests.corpus.snapshot_helpers import feedback, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(dataset, users):
    for i in range(12):
        rec, (a, b) = record(dataset, f"question {i}", f"good {i}", f"bad {i}")
        feedback(rec, "pairwise", {"a": a, "b": b, "choice": "a"}, users["manager"])
    return dataset


def post_and_run(client, drain_queue, recipe):
    with drain_queue():
        response = client.post("/api/v1/snapshots", {"recipe": recipe}, format="json")
    return response


def test_post_recipe_returns_202_location_and_job_then_detail_list_and_files(manager_client, judged, drain_queue):
    recipe = {"name": "dpo-1", "kind": "preference", "sources": {"datasets": ["demo"]},
              "split": {"test_fraction": 0.25, "seed": 7}}
    response = post_and_run(manager_client, drain_queue, recipe)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == f"/api/v1/snapshots/{body['id']}"
    assert body["status"] == "building" and body["job"]["kind"] == "corpus.snapshot"

    detail = manager_client.get(response["Location"]).json()
    assert detail["status"] == "ready", detail
    assert detail["counts"]["train"] + detail["counts"]["test"] == 12
    assert detail["counts"]["test"] > 0
    assert "# dpo-1" in detail["card"] and "Annotators:** 1 (1 people" in detail["card"]
    assert detail["recipe"]["split"] == {"test_fraction": 0.25, "seed": 7, "stratify_by_source": False}
    assert {f["name"] for f in detail["files"]} == {"train.jsonl", "test.jsonl", "manifest.json",
                                                    "card.md", "lineage.jsonl"}
    assert detail["progress"]["job_status"] == "succeeded"

    listed = manager_client.get("/api/v1/snapshots?kind=preference").json()
    assert [s["id"] for s in listed["results"]] == [body["id"]]
    assert manager_client.get("/api/v1/snapshots?kind=nope").status_code == 400

    url = f"/api/v1/snapshots/{body['id']}/files/train.jsonl"
    full = manager_client.get(url)
    assert full.status_code == 200 and full["Accept-Ranges"] == "bytes"
    data = b"".join(full.streaming_content)
    assert len(data) == int(full["Content-Length"])
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "margin", "source"}
    manifest = json.loads(b"".join(manager_client.get(
        f"/api/v1/snapshots/{body['id']}/files/manifest.json").streaming_content))
    assert manifest["files"]["train.jsonl"]["sha256"] == hashlib.sha256(data).hexdigest()

    part = manager_client.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert b"".join(part.streaming_content) == data[10:20]
    tail = manager_client.get(url, HTTP_RANGE="bytes=-5")
    assert tail.status_code == 206 and b"".join(tail.streaming_content) == data[-5:]
    open_ended = manager_client.get(url, HTTP_RANGE=f"bytes={len(data) - 3}-")
    assert b"".join(open_ended.streaming_content) == data[-3:]
    beyond = manager_client.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"
    assert manager_client.get(f"/api/v1/snapshots/{body['id']}/files/secrets.txt").status_code == 404
    assert manager_client.get("/api/v1/snapshots/999999/files/train.jsonl").status_code == 404


def test_recipe_as_yaml_text(manager_client, judged, drain_queue):
    yaml_text = "kind: sft\nsources: {datasets: [demo]}\npolicies: {min_rating: 4}\n"
    response = post_and_run(manager_client, drain_queue, yaml_text)
    assert response.status_code == 202
    # two responses and no edit/rating/thumbs: no best response, so the job fails with a reason
    snapshot = Snapshot.objects.get(pk=response.json()["id"])
    assert snapshot.status == "failed"
    assert "several responses and no judgement to choose one: 12" in snapshot.error
    assert "policies.allow_single_response" in snapshot.error
    assert snapshot.job.status == "failed" and snapshot.job.error == snapshot.error
    assert not snapshot.directory.exists()


@pytest.mark.parametrize("recipe, field, reason", [
    ({"kind": "dpo", "sources": ["demo"]}, "recipe.kind", "must be one of sft, preference, binary, text"),
    ({"kind": "sft", "sources": ["nope"]}, "recipe.sources.datasets", "no dataset 'nope'"),
    ({"kind": "sft", "sources": ["demo"], "filters": {"colour": "red"}}, "recipe.filters.colour", "unknown setting"),
    ({"kind": "sft", "sources": ["demo"], "filters": {"created_after": "2026-02-01", "created_before": "2026-01-01"}},
     "recipe.filters.created_before", "the date range is empty"),
    ({"kind": "binary", "sources": ["demo"], "policies": {"desirable_min_rating": 3, "undesirable_max_rating": 3}},
     "recipe.policies.undesirable_max_rating", "must be below desirable_min_rating"),
    ({"kind": "sft", "sources": ["demo"], "split": {"test_fraction": 1.5}}, "recipe.split.test_fraction", "between"),
    ({"kind": "sft", "sources": ["demo"], "filters": {"exclude_annotators": ["ghost"]}},
     "recipe.filters.exclude_annotators", "no user 'ghost'"),
    ({"kind": "preference", "sources": ["demo"], "output": {"format": "prompt_completion"}},
     "recipe.output.format", "must be one of chat, instruction, plain"),
    ({"kind": "text", "sources": ["demo"], "output": {"pack_to_tokens": 64}}, "recipe.output.tokenizer",
     "local tokenizer folder"),
    ({"kind": "text", "sources": ["demo"], "output": {"pack_to_tokens": 64, "tokenizer": "/nowhere"}},
     "recipe.output.tokenizer", "not a local tokenizer folder"),
    ("kind: [unclosed", "recipe", "not valid YAML"),
])
def test_bad_recipes_are_400_with_the_field_and_nothing_written(manager_client, dataset, recipe, field, reason):
    record(dataset, "q", "a")
    response = manager_client.post("/api/v1/snapshots", {"recipe": recipe}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["errors"][0]
    assert error["field"] == field and reason in error["reason"]
    assert not Snapshot.objects.exists()


def test_preference_recipe_on_a_dataset_without_pairwise_signal_is_400(manager_client, dataset, users):
    rec, (a,) = record(dataset, "q", "a")
    feedback(rec, "binary", {"response": a, "label": True}, users["manager"])
    response = manager_client.post("/api/v1/snapshots", {"recipe": {"kind": "preference", "sources": ["demo"]}},
                                   format="json")
    assert response.status_code == 400
    reason = response.json()["errors"][0]["reason"]
    assert "demo has no pairwise or ranking or rating feedback" in reason and "sft snapshot" in reason


def test_an_empty_result_fails_the_job_with_what_to_change(manager_client, judged, drain_queue):
    recipe = {"kind": "preference", "sources": ["demo"], "filters": {"metadata": {"lang": "fr"}}}
    response = post_and_run(manager_client, drain_queue, recipe)
    snapshot = Snapshot.objects.get(pk=response.json()["id"])
    assert snapshot.status == "failed"
    assert "no records match" in snapshot.error and "widen filters" in snapshot.error


def test_snapshots_are_read_only_through_the_api(manager_client, judged, drain_queue):
    response = post_and_run(manager_client, drain_queue, {"kind": "preference", "sources": ["demo"]})
    url = response["Location"]
    assert manager_client.patch(url, {"name": "renamed"}, format="json").status_code == 405
    assert manager_client.delete(url).status_code == 405


ROLES = ("anonymous", "norole", "annotator", "manager", "admin")


def test_permissions(clients, judged, drain_queue):
    response = post_and_run(clients["manager"], drain_queue, {"kind": "preference", "sources": ["demo"]})
    sid = response.json()["id"]
    expected = (401, 403, 403)
    for role, code in zip(ROLES[:3], expected):
        client = clients[role]
        assert client.get("/api/v1/snapshots").status_code == code, role
        assert client.get(f"/api/v1/snapshots/{sid}").status_code == code, role
        assert client.get(f"/api/v1/snapshots/{sid}/files/train.jsonl").status_code == code, role
        assert client.post("/api/v1/snapshots", {"recipe": {"kind": "sft", "sources": ["demo"]}},
                           format="json").status_code == code, role
    for role in ("manager", "admin"):
        assert clients[role].get(f"/api/v1/snapshots/{sid}/files/train.jsonl").status_code == 200
    assert Snapshot.objects.count() == 1


def test_admin_builds_browses_and_downloads(client, users, judged, drain_queue):
    client.force_login(users["admin"])
    page = client.get("/admin/corpus/snapshot/build/")
    assert page.status_code == 200 and b"Build snapshot" in page.content
    bad = client.post("/admin/corpus/snapshot/build/", {"recipe": "kind: nope\nsources: [demo]"})
    assert bad.status_code == 200 and b"kind: must be one of" in bad.content
    with drain_queue():
        made = client.post("/admin/corpus/snapshot/build/",
                           {"recipe": "kind: preference\nsources: [demo]\n"})
    snapshot = Snapshot.objects.get()
    assert made.status_code == 302 and made["Location"].endswith(f"/admin/corpus/snapshot/{snapshot.pk}/change/")
    detail = client.get(made["Location"])
    assert detail.status_code == 200 and b"train.jsonl" in detail.content and b"Load it" in detail.content
    listing = client.get("/admin/corpus/snapshot/")
    assert b"Build from a recipe" in listing.content
    download = client.get(f"/admin/corpus/snapshot/{snapshot.pk}/files/train.jsonl")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == (snapshot.directory / "train.jsonl").read_bytes()


def test_a_build_cancelled_before_it_ran_reads_as_failed(manager_client, judged):
    response = manager_client.post("/api/v1/snapshots", {"recipe": {"kind": "preference", "sources": ["demo"]}},
                                   format="json")
    job_id = response.json()["job"]["id"]
    assert manager_client.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    detail = manager_client.get(response["Location"]).json()
    assert detail["status"] == "failed" and "cancelled" in detail["error"]


def test_a_build_cancelled_while_running_removes_its_partial_folder(judged, users):
    from corpus.snapshots.job import abandon_snapshot, start_snapshot_build, _staging

    snapshot = start_snapshot_build({"kind": "preference", "sources": ["demo"]}, enqueue=False)
    _staging(snapshot).mkdir(parents=True)
    job = snapshot.job
    job.cancel_requested = True
    abandon_snapshot(job)
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and snapshot.error == "cancelled"
    assert not _staging(snapshot).exists()


@pytest.mark.django_db
def test_a_ready_snapshot_cannot_be_changed_through_the_model():
    from corpus.models import ImmutableSnapshotError

    snapshot = Snapshot.objects.create(name="s", kind="sft", status="building")
    snapshot.name = "renamed while building"
    snapshot.save()  # still being built: the builder may update it
    Snapshot.objects.filter(pk=snapshot.pk).update(status="ready")
    snapshot.refresh_from_db()
    snapshot.recipe = {"kind": "preference"}
    with pytest.raises(ImmutableSnapshotError):
        snapshot.save()
    snapshot.refresh_from_db()
    assert snapshot.recipe != {"kind": "preference"} and snapshot.name == "renamed while building"


@pytest.mark.django_db
def test_a_recipe_quoting_a_lone_surrogate_gets_a_readable_400(clients):
    # Found by schemathesis: the 400 quoted the unknown key back, and a lone surrogate (valid in
    # JSON text, not in UTF-8) made rendering the error a 500.
    response = clients["manager"].post("/api/v1/snapshots", data='{"recipe": {"\\ud84bx": 1}}',
                                       content_type="application/json")
    assert response.status_code == 400
    assert "\\ud84b" in response.json()["detail"]
    assert Snapshot.objects.count() == 0
