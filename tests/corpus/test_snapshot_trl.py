"""Each snapshot kind loads with datasets.load_dataset("json", ...) as written and runs one
training step in the matching TRL trainer (SFT, Reward, DPO, KTO) on a tiny Llama built from
a config, with the bundled model's tokenizer. No column is renamed or dropped."""

import pytest

from corpus.bundled_model import bundled_model_dir
from tests.corpus.snapshot_helpers import build, feedback, record

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_dir()))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def judged(dataset, users):
    for i in range(8):
        rec, (good, bad) = record(dataset, f"What is {i} + {i}?", f"It is {2 * i}.", f"Maybe {i}?")
        feedback(rec, "pairwise", {"a": good, "b": bad, "choice": "a", "strength": "clear"}, users["manager"])
        feedback(rec, "binary", {"response": good, "label": True}, users["manager"])
        feedback(rec, "binary", {"response": bad, "label": False}, users["manager"])
    return dataset


def load(snapshot):
    from datasets import load_dataset

    files = {"train": str(snapshot.directory / "train.jsonl")}
    return load_dataset("json", data_files=files)["train"]


def common(tmp_path):
    return dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                report_to="none", save_strategy="no", logging_steps=1, gradient_checkpointing=False,
                bf16=False, use_cpu=True)


def trained_one_step(trainer):
    result = trainer.train()
    assert result.global_step == 1
    return result


def test_sft_snapshot_trains_in_sft_trainer(judged, tiny_llama, tmp_path):
    from trl import SFTConfig, SFTTrainer

    snapshot, rows, _ = build(judged, "sft", output={"system_prompt": "Answer with a number."})
    train = load(snapshot)
    assert train.column_names == ["messages"] and len(train) == len(rows) == 8
    trainer = SFTTrainer(model=tiny_llama, args=SFTConfig(max_length=128, **common(tmp_path)),
                         train_dataset=train)
    trained_one_step(trainer)


def test_sft_prompt_completion_snapshot_trains_in_sft_trainer(judged, tiny_llama, tmp_path):
    from trl import SFTConfig, SFTTrainer

    snapshot, _, _ = build(judged, "sft", output={"format": "instruction"})
    train = load(snapshot)
    assert train.column_names == ["prompt", "completion"]
    trainer = SFTTrainer(model=tiny_llama, args=SFTConfig(max_length=128, **common(tmp_path)),
                         train_dataset=train)
    trained_one_step(trainer)


def test_preference_snapshot_trains_in_reward_and_dpo_trainers(judged, tiny_llama, tmp_path):
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    snapshot, _, _ = build(judged, "preference")
    train = load(snapshot)
    assert train.column_names == ["prompt", "chosen", "rejected", "margin", "source"]
    reward = RewardTrainer(model=tiny_llama, args=RewardConfig(max_length=128, **common(tmp_path)),
                           train_dataset=train)
    trained_one_step(reward)
    dpo = DPOTrainer(model=tiny_llama, args=DPOConfig(max_length=128, **common(tmp_path / "dpo")),
                     train_dataset=train)
    trained_one_step(dpo)


def test_binary_snapshot_trains_in_kto_trainer(judged, tiny_llama, tmp_path):
    from trl import KTOConfig, KTOTrainer

    snapshot, _, built = build(judged, "binary")
    assert built["counts"]["desirable"] == 8 and built["counts"]["undesirable"] == 8
    train = load(snapshot)
    assert train.column_names == ["prompt", "completion", "label"]
    kto = KTOTrainer(model=tiny_llama, args=KTOConfig(max_length=128, **common(tmp_path)),
                     train_dataset=train)
    trained_one_step(kto)


def test_packed_text_snapshot_trains_in_sft_trainer(dataset, tiny_llama, tmp_path):
    from trl import SFTConfig, SFTTrainer

    for i in range(10):
        record(dataset, f"Paragraph {i}: the quick brown fox jumps over the lazy dog number {i}.", "x")
    snapshot, rows, _ = build(dataset, "text", output={"pack_to_tokens": 32, "tokenizer": tiny_llama})
    train = load(snapshot)
    assert train.column_names == ["text"] and len(train) == len(rows) >= 2
    trainer = SFTTrainer(model=tiny_llama, args=SFTConfig(max_length=64, **common(tmp_path)),
                         train_dataset=train)
    trained_one_step(trainer)
