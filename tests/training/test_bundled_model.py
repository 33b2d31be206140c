"""The real bundled SmolLM2-135M-Instruct with LoRA: SFT, DPO and KTO a few steps each through
the API, the real worker and the trainer child; the adapter loads back on the bundled base and
the win rate against the base is stored (the rule "answer in at most three sentences")."""

import os

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from corpus.bundled_model import is_prepared

from .factories import bundled, make_snapshot
from .helpers import start_and_finish

pytestmark = [
    pytest.mark.slow, pytest.mark.django_db(transaction=True),
    # A 135M model on a shared 2-core CPU: a few minutes per run, over the suite's 300 s default.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not is_prepared(), reason="the bundled model is not converted (make install)"),
    # What these add is the real model's numbers, not the database's part (the tiny-Llama method
    # tests run every method through both databases): one pass is enough, the embedded default.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass"),
]

SMALL = {"max_steps": 2, "max_length": 96, "generation_eval_prompts": 2,
         "generation_max_new_tokens": 24, "max_eval_rows": 4, "lora_r": 4,
         "lora_target_modules": ["q_proj", "v_proj"]}


@pytest.mark.parametrize("method, kind", [("dpo", "preference"), ("sft", "sft"), ("kto", "binary")])
def test_lora_on_the_bundled_model(manager_client, method, kind):
    base = bundled()
    snapshot = make_snapshot(kind, train=8, test=2)
    run = start_and_finish(manager_client, method=method, mode="lora", base_model=base.pk,
                           snapshot=snapshot.pk, config=SMALL)
    assert run.step == 2 and run.metrics.filter(split="train").count() >= 2
    model = run.artifact
    assert model.format == "adapter" and model.base_id == base.pk
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.path), model.path)
    assert any(p.abs().sum() > 0 for n, p in loaded.named_parameters() if "lora_B" in n)
    generation = run.evaluation["generation"]
    assert generation["judge"] == {"kind": "rule", "rule": "max_sentences:3"}
    assert run.win_rate is not None and 0 <= run.win_rate <= 1
    # Real answers from a real chat model, not empty strings.
    assert all(sample["base"].strip() for sample in generation["samples"])
    assert run.evaluation["before"] and run.evaluation["after"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA and bf16 need a CUDA GPU")
def test_qlora_bf16_on_a_gpu(manager_client):
    base = bundled()
    snapshot = make_snapshot("sft", train=8, test=2)
    run = start_and_finish(manager_client, method="sft", mode="qlora", base_model=base.pk,
                           snapshot=snapshot.pk, config={**SMALL, "dtype": "bfloat16", "merge_adapter": True})
    assert run.status == "succeeded" and run.mode == "qlora"
    assert run.artifact.format == "adapter" and run.merged_model.format == "full"
    merged = AutoModelForCausalLM.from_pretrained(run.merged_model.path)
    assert merged.config.to_dict().get("quantization_config") is None  # served in full precision
