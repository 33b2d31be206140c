"""Packed SFT batches that keep each packed bin as a row of its own.

TRL 1.16 packs documents into bins of at most max_length tokens (best-fit decreasing) and then
flattens a whole batch into one row, the documents kept apart by position_ids. That row suits
flash attention's variable-length kernels; under SDPA (CPU, and GPUs without flash-attn)
transformers turns the position_ids into a block-diagonal mask over the whole row instead, so
a batch of 4 bins of 128 tokens pays attention over 512 x 512: on the 2-core development
machine 15% more time per token than 4 rows of 128 (bench/training_bench.py, docs/training.md).

Here the bins stay rows: a (batch, longest bin) batch with per-document position_ids and no
attention mask, from which transformers builds the same block-diagonal mask row by row. The
few padding slots at the end of a bin get position 0 each (each its own one-token sequence)
and no label. Documents never see each other, exactly as in the flattened form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _positions(example: dict) -> list[int]:
    lengths = example.get("seq_lengths") or [len(example["input_ids"])]
    return [p for length in lengths for p in range(length)]


@dataclass
class PackedRowsCollator:
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        shape = (len(examples), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, -100, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        for row, example in enumerate(examples):
            ids = example["input_ids"]
            input_ids[row, :len(ids)] = torch.tensor(ids)
            labels[row, :len(ids)] = torch.tensor(example.get("labels", ids))
            position_ids[row, :len(ids)] = torch.tensor(_positions(example))
        # A document's first token has nothing of its own before it to be predicted from (the
        # same rule as TRL's padding-free collator).
        labels[position_ids == 0] = -100
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def tokens_in_rows(position_ids: torch.Tensor) -> torch.Tensor:
    """The real tokens of a PackedRowsCollator batch: each row up to its last token past a
    document's first (padding has position 0). A row ending in a one-token document would be
    counted one short; chat-formatted documents are never one token."""
    if position_ids.dim() == 1:
        position_ids = position_ids[None]
    columns = torch.arange(1, position_ids.size(1) + 1, device=position_ids.device)
    return (columns * (position_ids > 0)).max(dim=1).values.sum()


def row_packing_trainer(sft_trainer_class):
    """SFTTrainer counting the tokens of PackedRowsCollator batches right: TRL 1.16 takes a
    batch without an attention mask for one flattened row and counts position_ids.size(1)."""

    class RowPackedSFTTrainer(sft_trainer_class):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            counted = self._total_train_tokens
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self._total_train_tokens != counted and "position_ids" in inputs:
                real = self.accelerator.gather_for_metrics(tokens_in_rows(inputs["position_ids"])).sum().item()
                self._total_train_tokens = counted + real // self._tp_size
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return result

    return RowPackedSFTTrainer
