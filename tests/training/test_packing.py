"""Packed bins as rows (training/packing.py): the same loss and the same per-token outputs as
TRL's one flattened row, documents that never see each other, tokens counted right."""

import pytest
import torch
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from corpus.bundled_model import bundled_model_dir
from training.packing import PackedRowsCollator, row_packing_trainer, tokens_in_rows

from .factories import build_tiny_llama

BINS = [[5, 7], [12], [3, 4, 2], [6]]  # documents per packed bin; the bins differ in length


def examples(seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for lengths in BINS:
        ids = torch.randint(10, 2000, (sum(lengths),), generator=generator).tolist()
        labels = list(ids)
        labels[0] = -100  # a prompt token: no loss on it
        out.append({"input_ids": ids, "labels": labels, "seq_lengths": lengths})
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny"))
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()


def test_rows_are_padded_bins_with_per_document_positions():
    batch = PackedRowsCollator(pad_token_id=0)(examples())
    assert batch["input_ids"].shape == (4, 12) and "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]
    assert batch["position_ids"][2].tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1, 0, 0, 0]
    assert batch["input_ids"][3, 6:].tolist() == [0] * 6
    assert (batch["labels"][3, 6:] == -100).all()  # padding learns nothing
    assert (batch["labels"][batch["position_ids"] == 0] == -100).all()  # nor a document's first token
    assert int(tokens_in_rows(batch["position_ids"])) == sum(map(sum, BINS)) == 39


def test_the_loss_and_every_real_token_match_the_flattened_row(model):
    rows = PackedRowsCollator(pad_token_id=0)(examples())
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples())
    with torch.no_grad():
        # no cache, as in training (TRL's compute_loss): transformers reads packing off the
        # position_ids only then
        by_rows = model(**rows, use_cache=False)
        by_flat = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], labels=flat["labels"],
                        use_cache=False)
    assert torch.allclose(by_rows.loss, by_flat.loss, atol=1e-5), (by_rows.loss, by_flat.loss)
    offset = 0
    for row, lengths in enumerate(BINS):
        width = sum(lengths)
        assert torch.allclose(by_rows.logits[row, :width], by_flat.logits[0, offset:offset + width], atol=1e-4)
        offset += width


def test_documents_in_a_row_do_not_see_each_other(model):
    """Rewriting the first document of a bin leaves the second one's outputs as they were."""
    batch = PackedRowsCollator(pad_token_id=0)(examples())
    changed = {key: value.clone() for key, value in batch.items()}
    changed["input_ids"][0, :5] = torch.tensor([11, 12, 13, 14, 15])
    with torch.no_grad():
        before, after = model(**batch, use_cache=False).logits, model(**changed, use_cache=False).logits
    assert not torch.allclose(before[0, :5], after[0, :5])
    assert torch.allclose(before[0, 5:], after[0, 5:], atol=1e-5)
    assert torch.allclose(before[1:], after[1:], atol=1e-5)


def test_the_trainer_counts_the_real_tokens_of_a_rows_batch(model, tmp_path):
    """TRL 1.16 counts a batch without an attention mask as one row: position_ids.size(1)."""
    args = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], packing=True, max_length=16,
                         per_device_train_batch_size=4)
    data = Dataset.from_list([{"text": "one two three four"}] * 4)
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    counts = {}
    for name, cls in (("trl", trl.SFTTrainer), ("winnow", row_packing_trainer(trl.SFTTrainer))):
        trainer = cls(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        model.train()
        trainer.compute_loss(model, PackedRowsCollator(pad_token_id=0)(examples()))
        counts[name] = trainer._total_train_tokens
    model.eval()
    assert counts == {"trl": 12, "winnow": 39}
