"""Curation runs through the REST API and the real worker: dedup, incremental, revert, errors."""

import pytest

from corpus.models import AuthorKind, Dataset, Feedback, Record, Response
from curate.models import CurationDecision, CurationRun, RecordSignature

from .conftest import add_records
from .corpus_text import document, edited

# Runs go through the real worker and its heartbeat thread, which has its own connection: rows
# must be committed for it to see the job, or on PostgreSQL it takes the job for lost.
pytestmark = pytest.mark.django_db(transaction=True)


NEAR = [{"step": "near_dedup", "config": {}}]


def create_run(client, dataset, pipeline=None, drain_queue=None):
    body = {"dataset": dataset.pk}
    if pipeline is not None:
        body["pipeline"] = pipeline
    with drain_queue():
        response = client.post("/api/v1/curation-runs", body, format="json")
    assert response.status_code == 202, response.json()
    assert response["Location"] == f"/api/v1/curation-runs/{response.json()['id']}"
    return client.get(response["Location"]).json()


def planted(dataset):
    base = [document(i) for i in range(12)]
    copies = [edited(base[0], 1, 0.01), edited(base[0], 2, 0.01), edited(base[5], 3, 0.01),
              base[7].upper().replace(" ", "   ")]  # exact after normalisation
    return add_records(dataset, base + copies)


@pytest.mark.parametrize("index", ["memory", "datasketch", "redis"])
def test_near_dedup_run_drops_copies_and_sets_clusters(manager_client, dataset, drain_queue,
                                                       index, redis_index):
    records = planted(dataset)
    run = create_run(manager_client, dataset,
                     [{"step": "near_dedup", "config": {"index": index}}], drain_queue)
    assert run["status"] == "succeeded", run
    assert run["job"]["status"] == "succeeded"
    dropped = Record.objects.filter(dataset=dataset, status="dropped").order_by("id")
    assert [r.pk for r in dropped] == [r.pk for r in records[12:]]
    first = Record.objects.get(pk=records[0].pk)
    assert first.status == "kept" and first.dup_cluster
    copy = Record.objects.get(pk=records[12].pk)
    assert copy.dup_cluster == first.dup_cluster
    assert f"near duplicate of record #{records[0].pk} in cluster {first.dup_cluster}" in copy.status_reason
    assert "Jaccard 0." in copy.status_reason
    step = run["report"]["steps"][0]
    assert step["cluster_sizes"] == {"2": 2, "3": 1}
    assert step["counts"] == {"kept": 3, "dropped": 4}
    assert step["signatures_computed"] == 16 and step["index"] == index
    assert RecordSignature.objects.filter(record__dataset=dataset).count() == 16


def test_all_three_indexes_give_the_same_clusters(manager_client, drain_queue, users, redis_index):
    outcomes = []
    for index in ("memory", "datasketch", "redis"):
        ds = Dataset.objects.create(name=f"same-{index}")
        planted(ds)
        create_run(manager_client, ds, [{"step": "near_dedup", "config": {"index": index}}],
                   drain_queue)
        records = list(Record.objects.filter(dataset=ds).order_by("id"))
        groups = {}
        for position, r in enumerate(records):
            if r.dup_cluster:
                groups.setdefault(r.dup_cluster, []).append((position, r.status))
        outcomes.append(sorted(groups.values()))
    assert outcomes[0] == outcomes[1] == outcomes[2] and len(outcomes[0]) == 3


def test_incremental_run_checks_new_records_without_rehashing(manager_client, dataset, drain_queue):
    records = planted(dataset)
    create_run(manager_client, dataset, NEAR, drain_queue)
    signed = dict(RecordSignature.objects.values_list("record_id", "signature"))
    newcomers = add_records(dataset, [edited(document(3), 7, 0.01), document(500)])
    run = create_run(manager_client, dataset, NEAR, drain_queue)
    step = run["report"]["steps"][0]
    assert step["signatures_computed"] == 2 and step["signatures_reused"] == 12
    assert {k: bytes(v) for k, v in RecordSignature.objects.filter(record_id__in=signed)
            .values_list("record_id", "signature")} == {k: bytes(v) for k, v in signed.items()}
    fresh = Record.objects.get(pk=newcomers[0].pk)
    assert fresh.status == "dropped" and f"record #{records[3].pk}" in fresh.status_reason
    assert Record.objects.get(pk=newcomers[1].pk).status == "kept"


def test_revert_restores_exactly_and_only_the_latest_run(manager_client, dataset, drain_queue):
    records = planted(dataset)
    Record.objects.filter(pk=records[1].pk).update(status="dropped", status_reason="by hand")
    before = {r.pk: (r.status, r.status_reason, r.dup_cluster, r.prompt)
              for r in Record.objects.filter(dataset=dataset)}
    first = create_run(manager_client, dataset, NEAR, drain_queue)
    second = create_run(manager_client, dataset, [
        {"step": "exact_dedup"},
        {"step": "pii", "config": {"targets": ["prompts"]}},
        {"step": "quality", "config": {"regex_rules": [
            {"name": "sixes", "pattern": "stone", "target": "prompts"}]}},
    ], drain_queue)
    assert second["status"] == "succeeded"
    refused = manager_client.post(f"/api/v1/curation-runs/{first['id']}/revert")
    assert refused.status_code == 409 and f"#{second['id']}" in refused.json()["detail"]
    assert manager_client.post(f"/api/v1/curation-runs/{second['id']}/revert").status_code == 200
    reverted = manager_client.post(f"/api/v1/curation-runs/{first['id']}/revert")
    assert reverted.status_code == 200 and reverted.json()["status"] == "reverted"
    assert reverted.json()["restored"]["records"] > 0
    after = {r.pk: (r.status, r.status_reason, r.dup_cluster, r.prompt)
             for r in Record.objects.filter(dataset=dataset)}
    assert after == before
    again = manager_client.post(f"/api/v1/curation-runs/{first['id']}/revert")
    assert again.status_code == 409


def test_exact_dedup_of_responses_and_policies(manager_client, dataset, drain_queue):
    records = add_records(dataset, ["Say hello", "Say hello please", "Explain tides"],
                          ["Hello there!", "  HELLO   there! ", "Tides come from the moon."])
    run = create_run(manager_client, dataset, [
        {"step": "exact_dedup", "config": {"target": "responses", "policy": "longest"}}],
        drain_queue)
    responses = {r.record_id: r for r in Response.objects.all()}
    assert responses[records[0].pk].status == "dropped"  # shorter copy loses under "longest"
    assert responses[records[1].pk].status == "kept"
    assert "exact duplicate of response" in responses[records[0].pk].status_reason
    assert run["report"]["steps"][0]["counts"] == {"dropped": 1}


@pytest.mark.parametrize("policy,expected", [
    ("earliest", 0), ("longest", 1), ("best_rated", 2), ("human_over_model", 2)])
def test_representative_policies(manager_client, dataset, drain_queue, policy, expected):
    base = document(42)
    texts = [base, base + " extra words at the end", edited(base, 3, 0.01)]
    records = add_records(dataset, texts, ["a", "b", "c"])
    Response.objects.filter(record=records[2]).update(author_kind=AuthorKind.HUMAN, model_name="")
    for record, value in zip(records, (2, 3, 5)):
        response = record.responses.get()
        Feedback.objects.create(record=record, kind="rating", author_kind="model", model_name="j",
                                payload={"response": response.pk, "value": value,
                                         "scale_min": 1, "scale_max": 5})
    create_run(manager_client, dataset, [
        {"step": "near_dedup", "config": {"policy": policy, "threshold": 0.7}}], drain_queue)
    kept = list(Record.objects.filter(dataset=dataset, status="kept"))
    assert [r.pk for r in kept] == [records[expected].pk]


def test_across_datasets_never_drops_the_other_dataset(manager_client, dataset, drain_queue):
    other = Dataset.objects.create(name="older")
    original = add_records(other, [document(77)])[0]
    copy = add_records(dataset, [edited(document(77), 1, 0.01), document(78)])[0]
    create_run(manager_client, dataset, [
        {"step": "near_dedup", "config": {"across_datasets": True}}], drain_queue)
    copy.refresh_from_db()
    original.refresh_from_db()
    assert copy.status == "dropped" and "in another dataset" in copy.status_reason
    assert original.status == "kept" and original.dup_cluster == ""


def test_contamination_step_against_reference_texts(manager_client, dataset, drain_queue):
    records = add_records(dataset, [document(i) for i in range(5)])
    benchmark = [edited(document(2), 5, 0.01), document(900)]
    run = create_run(manager_client, dataset, [{"step": "contamination", "config": {
        "reference_texts": benchmark, "reference_name": "my-bench"}}], drain_queue)
    dropped = Record.objects.get(status="dropped")
    assert dropped.pk == records[2].pk and "item 0 of my-bench" in dropped.status_reason
    assert run["report"]["steps"][0]["contaminated"] == 1


def test_decisions_endpoint_and_list_filter(manager_client, dataset, drain_queue):
    planted(dataset)
    run = create_run(manager_client, dataset, NEAR, drain_queue)
    page = manager_client.get(f"/api/v1/curation-runs/{run['id']}/decisions?action=dropped").json()
    assert len(page["results"]) == 4
    assert all(d["previous_status"] == "kept" and d["cluster"] for d in page["results"])
    listing = manager_client.get(f"/api/v1/curation-runs?dataset={dataset.pk}").json()
    assert [r["id"] for r in listing["results"]] == [run["id"]]
    assert manager_client.get("/api/v1/curation-runs?dataset=x").status_code == 400


def test_default_pipeline_runs(manager_client, dataset, drain_queue):
    planted(dataset)
    run = create_run(manager_client, dataset, None, drain_queue)
    assert [s["step"] for s in run["report"]["steps"]] == ["quality", "exact_dedup",
                                                           "near_dedup", "pii"]
    assert run["report"]["totals"]["dropped"] == 4


BAD = [
    ({"pipeline": []}, "pipeline"),
    ({"pipeline": "near_dedup"}, "pipeline"),
    ({"pipeline": [{"step": "sparkle"}]}, "pipeline.0.step"),
    ({"pipeline": [{"step": "near_dedup", "config": {"threshold": 1.5}}]},
     "pipeline.0.config.threshold"),
    ({"pipeline": [{"step": "near_dedup", "config": {"num_perm": 4}}]}, "pipeline.0.config.num_perm"),
    ({"pipeline": [{"step": "near_dedup", "config": {"unit": "sentence"}}]}, "pipeline.0.config.unit"),
    ({"pipeline": [{"step": "near_dedup", "config": {"bands": 40, "rows": 8}}]},
     "pipeline.0.config.bands"),
    ({"pipeline": [{"step": "near_dedup", "config": {"bands": 4}}]}, "pipeline.0.config.rows"),
    ({"pipeline": [{"step": "near_dedup", "config": {"index": "disk"}}]}, "pipeline.0.config.index"),
    ({"pipeline": [{"step": "near_dedup", "config": {"policy": "random"}}]},
     "pipeline.0.config.policy"),
    ({"pipeline": [{"step": "near_dedup", "config": {"shingle": 3}}]}, "pipeline.0.config.shingle"),
    ({"pipeline": [{"step": "exact_dedup", "config": {"target": "feedback"}}]},
     "pipeline.0.config.target"),
    ({"pipeline": [{"step": "contamination", "config": {}}]},
     "pipeline.0.config.reference_dataset"),
    ({"pipeline": [{"step": "contamination", "config": {"reference_dataset": 99999}}]},
     "pipeline.0.config.reference_dataset"),
    ({"pipeline": [{"step": "pii", "config": {"entities": ["DNA"]}}]}, "pipeline.0.config.entities"),
    ({"pipeline": [{"step": "pii", "config": {"policies": {"EMAIL": "shred"}}}]},
     "pipeline.0.config.policies.EMAIL"),
    ({"pipeline": [{"step": "pii", "config": {"policies": {"DNA": "redact"}}}]},
     "pipeline.0.config.policies"),
    ({"pipeline": [{"step": "pii", "config": {"min_score": -1}}]}, "pipeline.0.config.min_score"),
    ({"pipeline": [{"step": "quality", "config": {"max_repetition": 2}}]},
     "pipeline.0.config.max_repetition"),
    ({"pipeline": [{"step": "quality", "config": {"min_prompt_chars": 50, "max_prompt_chars": 10}}]},
     "pipeline.0.config.min_prompt_chars"),
    ({"pipeline": [{"step": "quality", "config": {"regex_rules": [{"name": "x", "pattern": "(["}]}}]},
     "pipeline.0.config.regex_rules.0.pattern"),
    ({"pipeline": [{"step": "quality", "config": {"regex_rules": [{"pattern": "a"}]}}]},
     "pipeline.0.config.regex_rules.0.name"),
    ({"pipeline": [{"step": "quality"}, {"step": "quality", "config": {"language": "fr"}}]},
     "pipeline.1.config.language"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[f for _, f in BAD])
def test_bad_configs_are_400_naming_the_field(manager_client, dataset, body, field):
    response = manager_client.post("/api/v1/curation-runs", {"dataset": dataset.pk, **body},
                                   format="json")
    assert response.status_code == 400, response.json()
    fields = [e["field"] for e in response.json()["errors"]]
    assert field in fields, fields
    assert CurationRun.objects.count() == 0


def test_bad_dataset_is_400(manager_client):
    response = manager_client.post("/api/v1/curation-runs", {"dataset": 12345}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "dataset"


def test_permissions(clients, dataset, drain_queue):
    planted(dataset)
    for role in ("annotator", "norole", "anonymous"):
        response = clients[role].post("/api/v1/curation-runs", {"dataset": dataset.pk}, format="json")
        assert response.status_code in (401, 403), role
    run = create_run(clients["manager"], dataset, NEAR, drain_queue)
    # Annotators see no dataset here (no assignment), so no runs either.
    assert clients["annotator"].get("/api/v1/curation-runs").json()["results"] == []
    assert clients["annotator"].post(f"/api/v1/curation-runs/{run['id']}/revert").status_code == 403
    assert clients["norole"].get("/api/v1/curation-runs").status_code == 403
    assert clients["admin"].get(f"/api/v1/curation-runs/{run['id']}").status_code == 200
    assert CurationDecision.objects.filter(run_id=run["id"]).exists()
