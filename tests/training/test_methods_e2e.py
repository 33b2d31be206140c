"""Every method end to end on a tiny Llama: POST /training-runs, the real worker on the training
queue, the real trainer child process; then the metrics, checkpoints, evaluation and the
registered model, which must load back and differ from its base."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from corpus.models import RegisteredModel
from jobs.models import Job

from .factories import make_snapshot
from .helpers import changed_tensors, start_and_finish

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(1200)]


def check_common(run, client, *, steps=2):
    run.refresh_from_db()
    assert run.status == "succeeded" and run.step == steps and run.total_steps == steps
    job = Job.objects.get(pk=run.job_id)
    assert job.status == "succeeded" and job.queue == "training"
    assert (job.progress_done, job.progress_total) == (steps, steps)
    train_points = run.metrics.filter(split="train")
    assert train_points.count() >= steps
    assert all(p.learning_rate is not None for p in train_points)
    assert any(p.loss is not None for p in train_points)
    assert list(run.checkpoints.values_list("step", flat=True))  # checkpoints were written
    detail = client.get(f"/api/v1/training-runs/{run.pk}").json()
    assert detail["progress"] == {"done": steps, "total": steps, "fraction": 1.0, "stage": "done"}
    assert detail["latest_metrics"] and detail["checkpoints"]
    assert detail["artifact"] == run.artifact_id
    metrics = client.get(f"/api/v1/training-runs/{run.pk}/metrics").json()
    assert [m["step"] for m in metrics if m["split"] == "train"][:steps] == list(range(1, steps + 1))
    logs = client.get(f"/api/v1/training-runs/{run.pk}/logs").json()
    assert any("starting the trainer" in e["message"] for e in logs["events"])
    assert "parameters trainable" in logs["trainer_output"]
    artifacts = client.get(f"/api/v1/training-runs/{run.pk}/artifacts").json()
    names = [f["file"] for f in artifacts["files"]]
    assert "artifact/winnow-run.json" in names
    download = client.get(f"/api/v1/training-runs/{run.pk}/artifacts?file=artifact/winnow-run.json")
    assert download.status_code == 200
    manifest = __import__("json").loads(b"".join(download.streaming_content))
    assert manifest["snapshot"]["sha256"] and manifest["versions"]["trl"].startswith("1.16")
    model = run.artifact
    assert model.origin == "trained" and model.base_id == run.base_model_id
    assert model.metadata["training_run"] == run.pk and model.metadata["method"] == run.method
    assert model.metadata["snapshot"] == run.snapshot_id
    return model


def check_adapter_loads_and_learned(model, base):
    assert model.format == "adapter"
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.path), model.path)
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it moved
    ids = torch.tensor([[1, 2, 3]])
    assert loaded(input_ids=ids).logits.shape[-1] == loaded.config.vocab_size


def check_full_loads_and_learned(model, base):
    assert model.format == "full"
    AutoModelForCausalLM.from_pretrained(model.path)
    assert changed_tensors(base.path, model.path)


def test_sft_lora_prompt_completion_with_merge_and_win_rate(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    run = start_and_finish(manager_client, method="sft", mode="lora", base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config={"merge_adapter": True})
    model = check_common(run, manager_client)
    check_adapter_loads_and_learned(model, tiny_model)
    merged = run.merged_model
    assert merged.format == "full" and merged.base_id == tiny_model.pk
    check_full_loads_and_learned(merged, tiny_model)
    evaluation = run.evaluation
    assert evaluation["before"]["loss"] > 0 and evaluation["after"]["loss"] > 0
    assert "perplexity" in evaluation["after"] and "loss" in evaluation["improvement"]
    generation = evaluation["generation"]
    assert generation["prompts"] == 2 and generation["judge"]["rule"] == "max_sentences:3"
    assert run.win_rate == generation["win_rate"] and 0 <= run.win_rate <= 1
    assert generation["wins"] + generation["losses"] + generation["ties"] == 2


def test_sft_full_on_messages_rows_with_packing(manager_client, tiny_model):
    snapshot = make_snapshot("sft", conversational=True)
    run = start_and_finish(manager_client, method="sft", mode="full", base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config={"packing": True, "learning_rate": 1e-3})
    check_full_loads_and_learned(check_common(run, manager_client), tiny_model)
    assert run.evaluation["improvement"]["loss"]["better"] is True


def test_sft_lora_padding_free_with_a_max_length(manager_client, tiny_model):
    # TRL 1.16 refuses padding_free with a max_length; Winnow truncates the prepared rows itself.
    snapshot = make_snapshot("sft")
    run = start_and_finish(manager_client, method="sft", mode="lora", base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config={"padding_free": True, "max_length": 24,
                                                         "learning_rate": 1e-3})
    check_adapter_loads_and_learned(check_common(run, manager_client), tiny_model)


def test_continued_pretraining_on_text(manager_client, tiny_model):
    snapshot = make_snapshot("text")
    run = start_and_finish(manager_client, method="pretrain", mode="full", base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config={"learning_rate": 1e-3})
    check_full_loads_and_learned(check_common(run, manager_client), tiny_model)
    assert run.evaluation["after"]["loss"] < run.evaluation["before"]["loss"]
    assert "generation" not in run.evaluation  # CPT is not judged on answers


def test_partial_freeze_with_layerwise_decay_and_gradual_unfreezing(manager_client, tiny_model):
    snapshot = make_snapshot("sft")
    run = start_and_finish(
        manager_client, method="sft", mode="partial", base_model=tiny_model.pk, snapshot=snapshot.pk,
        config={"freeze_first_layers": 1, "layerwise_lr_decay": 0.5, "gradual_unfreezing": True,
                "unfreeze_every_steps": 1, "learning_rate": 1e-3, "generation_eval": False})
    model = check_common(run, manager_client)
    changed = changed_tensors(tiny_model.path, model.path)
    assert any("layers.1." in name for name in changed)
    assert not any("layers.0." in name or "embed_tokens" in name for name in changed), changed


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_dpo(manager_client, tiny_model, mode):
    snapshot = make_snapshot("preference")
    config = {"precompute_ref_log_probs": True} if mode == "lora" else {"learning_rate": 1e-4}
    run = start_and_finish(manager_client, method="dpo", mode=mode, base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config=config)
    model = check_common(run, manager_client)
    (check_adapter_loads_and_learned if mode == "lora" else check_full_loads_and_learned)(model, tiny_model)
    after = run.evaluation["after"]
    assert "rewards/accuracies" in after and "rewards/margins" in after
    assert run.win_rate is not None


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_kto_weights_come_from_the_snapshot_counts(manager_client, tiny_model, mode):
    snapshot = make_snapshot("binary", counts={"train": 16, "test": 4, "desirable": 12, "undesirable": 4})
    run = start_and_finish(manager_client, method="kto", mode=mode, base_model=tiny_model.pk,
                           snapshot=snapshot.pk, config={"learning_rate": 1e-4})
    model = check_common(run, manager_client)
    (check_adapter_loads_and_learned if mode == "lora" else check_full_loads_and_learned)(model, tiny_model)
    assert run.config["desirable_weight"] == 1.0 and run.config["undesirable_weight"] == 3.0
    assert "rewards/margins" in run.evaluation["after"]


def test_orpo_lora(manager_client, tiny_model):
    snapshot = make_snapshot("preference")
    run = start_and_finish(manager_client, method="orpo", mode="lora", base_model=tiny_model.pk,
                           snapshot=snapshot.pk)
    check_adapter_loads_and_learned(check_common(run, manager_client), tiny_model)
    assert "rewards/accuracies" in run.evaluation["after"]


def test_reward_model_then_rlhf_with_grpo_and_a_rule_reward(manager_client, tiny_model):
    snapshot = make_snapshot("preference")
    reward_run = start_and_finish(manager_client, method="reward", mode="lora",
                                  base_model=tiny_model.pk, snapshot=snapshot.pk)
    check_common(reward_run, manager_client)
    assert "accuracy" in reward_run.evaluation["after"]
    reward_model = reward_run.merged_model  # reward adapters are always merged: RLHF loads a folder
    assert reward_model.format == "full" and reward_model.metadata["method"] == "reward"
    head = AutoModelForSequenceClassification.from_pretrained(reward_model.path)
    assert head.config.num_labels == 1

    rlhf = start_and_finish(
        manager_client, method="rlhf", mode="lora", base_model=tiny_model.pk,
        snapshot=snapshot.pk, reward_model=reward_model.pk,
        config={"algorithm": "grpo", "rule_rewards": ["max_sentences:3"],
                "max_completion_length": 8})
    model = check_common(rlhf, manager_client)
    assert model.format == "adapter"
    logged = rlhf.metrics.filter(split="train").first().values
    assert "rewards/rule_max_sentences_3/mean" in logged and "reward" in logged
    assert RegisteredModel.objects.filter(origin="trained").count() == 3
