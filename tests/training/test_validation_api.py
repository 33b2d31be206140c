"""POST /training-runs validates everything before writing anything; /models registers local
folders; who may do what."""

import pytest

from corpus.models import RegisteredModel
from jobs.models import Job
from training.config import cuda_available
from training.models import TrainingRun

from .factories import make_snapshot

pytestmark = pytest.mark.django_db

URL = "/api/v1/training-runs"


def post_run(client, **body):
    return client.post(URL, body, format="json")


def assert_rejected(response, field, *phrases):
    assert response.status_code == 400, response.content
    body = response.json()
    fields = {e["field"]: e["reason"] for e in body["errors"]}
    assert field in fields, body
    for phrase in phrases:
        assert phrase in fields[field], fields[field]
    assert TrainingRun.objects.count() == 0 and Job.objects.count() == 0  # nothing written


def test_valid_request_is_accepted_with_location_and_resolved_defaults(manager_client, tiny_model):
    snapshot = make_snapshot("preference")
    response = post_run(manager_client, method="dpo", base_model=tiny_model.pk,
                        snapshot=snapshot.pk, config={"max_steps": 3, "beta": 0.2})
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get()
    assert response["Location"] == f"/api/v1/training-runs/{run.pk}"
    body = response.json()
    assert body["status"] == "queued" and body["mode"] == "lora"
    assert body["config"]["beta"] == 0.2 and body["config"]["max_steps"] == 3
    assert body["config"]["learning_rate"] == 5e-5  # DPO's LoRA default
    assert body["config"]["precompute_ref_log_probs"] is False
    job = Job.objects.get()
    assert job.queue == "training" and job.kind == "training.run"
    assert job.subject == f"training-run:{run.pk}" and body["job"]["id"] == job.pk


@pytest.mark.parametrize("config, field, phrase", [
    ({"learning_rate": -1}, "config.learning_rate", "between"),
    ({"batch_size": 0}, "config.batch_size", "between"),
    ({"epochs": "three"}, "config.epochs", "number"),
    ({"scheduler": "zigzag"}, "config.scheduler", "one of"),
    ({"grad_accumulation": 1.5}, "config.grad_accumulation", "whole number"),
    ({"warmup_ratio": 2}, "config.warmup_ratio", "between"),
    ({"seed": -4}, "config.seed", "between"),
    ({"max_length": 2}, "config.max_length", "between"),
    ({"lora_dropout": 1.5}, "config.lora_dropout", "between"),
    ({"no_such_knob": 1}, "config.no_such_knob", "unknown hyper-parameter"),
    ({"packing": True}, "config.packing", "does not apply to method dpo"),
    ({"lora_target_modules": ["q_proj", "attention_wizard"]}, "config.lora_target_modules",
     "unknown target modules ['attention_wizard']"),
    ({"freeze_first_layers": 1}, "config.freeze_first_layers", "only for mode partial"),
    ({"judge_rule": "max_vibes:2"}, "config.judge_rule", "unknown rule"),
])
def test_bad_hyper_parameters_are_400_and_write_nothing(manager_client, tiny_model, config, field, phrase):
    snapshot = make_snapshot("preference")
    response = post_run(manager_client, method="dpo", base_model=tiny_model.pk,
                        snapshot=snapshot.pk, config=config)
    assert_rejected(response, field, phrase)


@pytest.mark.parametrize("method, kind, expected", [
    ("dpo", "sft", "dpo trains on a preference snapshot (prompt/chosen/rejected rows)"),
    ("kto", "preference", "kto trains on a binary snapshot (prompt/completion/label rows)"),
    ("sft", "preference", "sft trains on a sft snapshot (messages, or prompt/completion rows)"),
    ("pretrain", "sft", "pretrain trains on a text snapshot (text rows)"),
    ("reward", "binary", "reward trains on a preference snapshot"),
])
def test_wrong_snapshot_kind_says_what_is_expected(manager_client, tiny_model, method, kind, expected):
    snapshot = make_snapshot(kind)
    response = post_run(manager_client, method=method, base_model=tiny_model.pk, snapshot=snapshot.pk)
    assert_rejected(response, "snapshot", expected, f"snapshot {snapshot.pk} is {kind}")


def test_kto_with_batch_size_one_is_refused(manager_client, tiny_model):
    snapshot = make_snapshot("binary")
    response = post_run(manager_client, method="kto", base_model=tiny_model.pk,
                        snapshot=snapshot.pk, config={"batch_size": 1})
    assert_rejected(response, "config.batch_size", "KTO needs batch_size of at least 2")


def test_kto_without_undesirable_examples_is_refused(manager_client, tiny_model):
    snapshot = make_snapshot("binary", counts={"train": 16, "test": 4, "desirable": 16, "undesirable": 0})
    response = post_run(manager_client, method="kto", base_model=tiny_model.pk, snapshot=snapshot.pk)
    assert_rejected(response, "snapshot", "desirable and undesirable")


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA, so QLoRA is allowed")
def test_qlora_without_cuda_is_a_clear_400(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    response = post_run(manager_client, method="sft", mode="qlora", base_model=tiny_model.pk,
                        snapshot=snapshot.pk)
    assert_rejected(response, "mode", "qlora needs a CUDA GPU", "use mode lora")


def test_snapshot_not_ready_or_unknown_is_refused(manager_client, tiny_model):
    building = make_snapshot("sft", status="building")
    assert_rejected(post_run(manager_client, method="sft", base_model=tiny_model.pk,
                             snapshot=building.pk), "snapshot", "is building, not ready")
    assert_rejected(post_run(manager_client, method="sft", base_model=tiny_model.pk,
                             snapshot=99999), "snapshot", "does not exist")
    assert_rejected(post_run(manager_client, method="tune", base_model=tiny_model.pk,
                             snapshot=building.pk), "method", "not a valid choice")


def test_partial_mode_needs_exactly_one_way_to_freeze(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    assert_rejected(post_run(manager_client, method="sft", mode="partial", base_model=tiny_model.pk,
                             snapshot=snapshot.pk), "config.freeze_first_layers", "exactly one")
    assert_rejected(post_run(manager_client, method="sft", mode="partial", base_model=tiny_model.pk,
                             snapshot=snapshot.pk, config={"freeze_first_layers": 2}),
                    "config.freeze_first_layers", "below the model's 2 layers")
    assert_rejected(post_run(manager_client, method="sft", mode="partial", base_model=tiny_model.pk,
                             snapshot=snapshot.pk, config={"trainable_modules": ["flux_capacitor"]}),
                    "config.trainable_modules", "no module")


def test_rlhf_needs_a_reward_runs_model(manager_client, tiny_model):
    snapshot = make_snapshot("preference")
    assert_rejected(post_run(manager_client, method="rlhf", base_model=tiny_model.pk,
                             snapshot=snapshot.pk), "reward_model", "needs a reward model")
    assert_rejected(post_run(manager_client, method="rlhf", base_model=tiny_model.pk,
                             snapshot=snapshot.pk, reward_model=tiny_model.pk),
                    "reward_model", "not produced by a reward run")


def test_adapter_base_model_is_refused(manager_client, tiny_model):
    adapter = RegisteredModel.objects.create(name="some-adapter", origin="trained", format="adapter",
                                             path=tiny_model.path, base=tiny_model)
    snapshot = make_snapshot("sft")
    response = post_run(manager_client, method="sft", base_model=adapter.pk, snapshot=snapshot.pk)
    assert response.status_code == 400 and "is an adapter" in response.json()["detail"]
    assert TrainingRun.objects.count() == 0


# -- models registry ---------------------------------------------------------------------------


def test_register_a_local_folder_and_read_it_back(manager_client, tiny_model_dir):
    response = manager_client.post("/api/v1/models", {"name": "my-tiny", "path": str(tiny_model_dir)},
                                   format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["origin"] == "local" and body["format"] == "full"
    detail = manager_client.get(f"/api/v1/models/{body['id']}").json()
    assert detail["path"] == str(tiny_model_dir.resolve())
    names = [m["name"] for m in manager_client.get("/api/v1/models").json()["results"]]
    assert "my-tiny" in names and "SmolLM2-135M-Instruct" in names  # the bundled one is listed


def test_register_rejects_missing_and_non_model_folders(manager_client, tmp_path, tiny_model):
    missing = manager_client.post("/api/v1/models", {"name": "x", "path": str(tmp_path / "nope")},
                                  format="json")
    assert missing.status_code == 400 and "no such folder" in missing.json()["detail"]
    empty = tmp_path / "empty"
    empty.mkdir()
    no_config = manager_client.post("/api/v1/models", {"name": "x", "path": str(empty)}, format="json")
    assert no_config.status_code == 400 and "no config.json" in no_config.json()["detail"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    bad = manager_client.post("/api/v1/models", {"name": "x", "path": str(broken)}, format="json")
    assert bad.status_code == 400 and "does not load" in bad.json()["detail"]
    relative = manager_client.post("/api/v1/models", {"name": "x", "path": "models/tiny"}, format="json")
    assert relative.status_code == 400 and "absolute path" in relative.json()["detail"]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    no_base = manager_client.post("/api/v1/models", {"name": "x", "path": str(adapter)}, format="json")
    assert no_base.status_code == 400 and "needs its base" in no_base.json()["detail"]
    dupe = manager_client.post("/api/v1/models", {"name": tiny_model.name, "path": tiny_model.path},
                               format="json")
    assert dupe.status_code == 400
    assert RegisteredModel.objects.filter(name="x").count() == 0


# -- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("role, expected", [
    ("admin", 201), ("manager", 201), ("annotator", 403), ("norole", 403), ("anonymous", 401),
])
def test_only_managers_start_runs(clients, tiny_model, role, expected):
    snapshot = make_snapshot("sft")
    response = post_run(clients[role], method="sft", base_model=tiny_model.pk, snapshot=snapshot.pk)
    assert response.status_code == expected, response.content
    assert TrainingRun.objects.count() == (1 if expected == 201 else 0)


@pytest.mark.parametrize("role, expected", [
    ("manager", 200), ("annotator", 403), ("norole", 403), ("anonymous", 401),
])
def test_who_may_read_runs_and_models(clients, tiny_model, role, expected):
    snapshot = make_snapshot("sft")
    run = TrainingRun.objects.create(method="sft", base_model=tiny_model, snapshot=snapshot, config={})
    client = clients[role]
    for url in (URL, f"{URL}/{run.pk}", f"{URL}/{run.pk}/metrics", f"{URL}/{run.pk}/logs",
                f"{URL}/{run.pk}/artifacts", "/api/v1/models", f"/api/v1/models/{tiny_model.pk}"):
        assert client.get(url).status_code == expected, url
    for url in (f"{URL}/{run.pk}/cancel", f"{URL}/{run.pk}/resume"):
        status = client.post(url).status_code
        assert status == expected if expected != 200 else status in (202, 400), url


def test_resume_of_a_queued_run_is_400(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    run = TrainingRun.objects.create(method="sft", base_model=tiny_model, snapshot=snapshot, config={})
    response = manager_client.post(f"{URL}/{run.pk}/resume")
    assert response.status_code == 400 and "only failed or cancelled runs resume" in response.json()["detail"]


def test_metrics_and_list_filters_validate(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    run = TrainingRun.objects.create(method="sft", base_model=tiny_model, snapshot=snapshot, config={})
    assert manager_client.get(f"{URL}/{run.pk}/metrics?after=x").status_code == 400
    assert manager_client.get(f"{URL}/{run.pk}/metrics?split=test").status_code == 400
    assert manager_client.get(f"{URL}?status=exploded").status_code == 400
    assert manager_client.get(f"{URL}/{run.pk}/artifacts?file=../../etc/passwd").status_code == 404
    assert manager_client.get(f"{URL}/99999").status_code == 404
