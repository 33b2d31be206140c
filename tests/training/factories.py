"""Test set-up for training: a tiny Llama built from a config, and snapshots written by hand in
the exact TRL columns (the Snapshot contract: kind, status, directory with train/test.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from corpus.bundled_model import bundled_model_dir, register_bundled_model
from corpus.models import RegisteredModel, Snapshot

TINY_MODEL_NAME = "tiny-llama"


def build_tiny_llama(folder: Path) -> Path:
    """A 2-layer, 64-wide Llama with random weights and the bundled model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def register_tiny(folder: Path) -> RegisteredModel:
    return RegisteredModel.objects.create(
        name=TINY_MODEL_NAME, origin=RegisteredModel.Origin.LOCAL, path=str(build_tiny_llama(folder)))


def bundled() -> RegisteredModel:
    return register_bundled_model()


QUESTIONS = [
    ("What colour is the sky?", "Blue.", "The sky, as seen from the surface of the earth on a clear day, is generally blue. This is because of Rayleigh scattering. Shorter wavelengths scatter more. It changes at sunset. Clouds make it grey."),
    ("Name a prime number.", "Seven.", "There are many prime numbers. One of them is seven. Another is eleven. Yet another is thirteen. And of course two is the only even one."),
    ("What is the capital of France?", "Paris.", "France is a country in Europe. Its capital city is Paris. Paris is on the Seine. It is famous for the Eiffel Tower. Many tourists visit every year."),
    ("How many legs does a spider have?", "Eight.", "Spiders are arachnids, not insects. They have eight legs. Insects have six legs. Spiders also have two body parts. Many spin webs."),
    ("What is two plus two?", "Four.", "Addition is a basic arithmetic operation. Two plus two equals four. This is taught early in school. It is a common example. Some jokes say five."),
    ("Which planet is largest?", "Jupiter.", "The solar system has eight planets. The largest of them is Jupiter. It is a gas giant. Saturn is second. Jupiter has many moons."),
    ("What do bees make?", "Honey.", "Bees are insects that live in colonies. They collect nectar from flowers. From it they make honey. They also make wax. Bees pollinate crops."),
    ("What is frozen water called?", "Ice.", "Water freezes at zero degrees Celsius. When it freezes it becomes ice. Ice is less dense than water. That is why it floats. Glaciers are made of ice."),
]


def rows_for(kind: str, count: int, offset: int = 0, conversational: bool = False) -> list[dict]:
    rows = []
    for i in range(count):
        q, short, long = QUESTIONS[(i + offset) % len(QUESTIONS)]
        q = f"{q} (#{i + offset})"
        if kind == "sft":
            if conversational:
                rows.append({"messages": [{"role": "user", "content": q},
                                          {"role": "assistant", "content": short}]})
            else:
                rows.append({"prompt": q, "completion": short})
        elif kind == "preference":
            rows.append({"prompt": q, "chosen": short, "rejected": long, "margin": 1.0,
                         "source": "test"})
        elif kind == "binary":
            label = i % 2 == 0
            rows.append({"prompt": q, "completion": short if label else long, "label": label})
        elif kind == "text":
            rows.append({"text": f"{q} {long}"})
    return rows


def make_snapshot(kind: str, train: int = 16, test: int = 4, *, status="ready",
                  conversational: bool = False, counts: dict | None = None) -> Snapshot:
    # Created building, marked `status` once its files and counts exist: a ready snapshot
    # is immutable.
    snapshot = Snapshot.objects.create(name=f"{kind} snapshot", kind=kind,
                                       status=Snapshot.Status.BUILDING)
    train_rows = rows_for(kind, train, conversational=conversational)
    test_rows = rows_for(kind, test, offset=1000, conversational=conversational)
    folder = snapshot.directory
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train_rows), ("test", test_rows)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    (folder / "manifest.json").write_text(json.dumps({"files": {}}))
    (folder / "card.md").write_text(f"# {kind} snapshot for tests\n")
    snapshot.counts = counts or {"train": train, "test": test}
    if kind == "binary" and counts is None:
        desirable = sum(1 for r in train_rows if r["label"])
        snapshot.counts.update(desirable=desirable, undesirable=train - desirable)
    snapshot.status = status
    snapshot.save(update_fields=["counts", "status"])
    return snapshot
