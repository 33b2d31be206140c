"""Training throughput: SFT with LoRA on the bundled SmolLM2-135M-Instruct.

    python bench/training_bench.py            # 30 optimizer steps per measurement
    python bench/training_bench.py --quick    # 6 steps per measurement

Four measurements on the same variable-length prompt/completion data (long-tailed lengths, as
real instruction data has; the share of padding in its padded batches is printed), same seed:
  1. Winnow: a TrainingRun through the real job and the trainer child process (padded batches);
     tokens/s and steps/s from the trainer's own runtime (model loading and evaluation excluded).
  2. Plain TRL: the same data, LoRA config and SFTConfig in a script of a dozen lines.
     1 and 2 take turns, twice, and each keeps its best run.
  3. Winnow with packing (TRL's best-fit-decreasing bins, each bin a row with per-document
     position_ids under SDPA: training/packing.py), on the same data.
  4. Winnow padding-free (each batch flattened into one row with position_ids, no packing).
  5. On a CUDA GPU only: Winnow LoRA and QLoRA (4-bit base), tokens/s and peak GPU memory.
Runs in float32 on a CPU, bfloat16 (both Winnow and plain TRL) on a GPU that has it.
Goals (issue 7): Winnow/plain TRL tokens/s >= 0.95; packing or padding-free >= 1.5x padded
tokens/s.
Runs on a fresh SQLite file in a temp folder. Ends with one line of JSON.
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("data model train label prompt answer quality human judge token corpus dedup "
         "response preference reward policy gradient batch sample filter review").split()

PLAIN_TRL = r'''
import json, sys, time, torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
model_dir, data, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rows = [json.loads(l) for l in open(data)]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, cfg["dtype"]))
args = SFTConfig(output_dir=cfg["out"], max_steps=cfg["steps"], per_device_train_batch_size=cfg["batch"],
                 learning_rate=2e-4, max_length=cfg["max_length"], bf16=cfg["dtype"] == "bfloat16",
                 gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[],
                 use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                 seed=42, packing=False, completion_only_loss=True, lr_scheduler_type="linear")
lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=lora)
out = trainer.train()
tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
print("RESULT " + json.dumps({"runtime": out.metrics["train_runtime"], "tokens": tokens}))
'''


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def text_of(rng: random.Random, words: int) -> str:
    parts = []
    while words > 0:
        take = min(words, rng.randint(5, 15))
        parts.append(sentence(rng, take))
        words -= take
    return " ".join(parts)


def write_rows(path: Path, n: int) -> None:
    """Prompt/completion rows with the long-tailed lengths of real instruction data (log-normal,
    like Dolly's and Alpaca's: most answers short, a few long): from ~10 tokens to past
    max_length, median ~45 tokens."""
    rng = random.Random(0)
    with open(path, "w") as handle:
        for _ in range(n):
            prompt = sentence(rng, max(3, min(60, round(rng.lognormvariate(math.log(10), 0.6)))))
            completion = text_of(rng, max(1, min(400, round(rng.lognormvariate(math.log(25), 1.1)))))
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")


def padded_fill(path: Path, batch: int, max_length: int, model_dir: Path) -> float:
    """Expected share of real tokens in a padded batch of these rows (prompt + completion +
    EOS, cut at max_length; batches drawn at random as the trainer's sampler draws them). 1 / this
    is what dropping the padding alone gains when every token costs the same."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [min(max_length, len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) + 1)
               for row in map(json.loads, path.read_text().splitlines())]
    rng, fills = random.Random(1), []
    for _ in range(100):
        rng.shuffle(lengths)
        for start in range(0, len(lengths) - batch + 1, batch):
            rows = lengths[start:start + batch]
            fills.append(sum(rows) / (batch * max(rows)))
    return sum(fills) / len(fills)


def setup_django(data_dir: Path):
    os.environ["WINNOW_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "winnow.settings")
    os.environ.setdefault("WINNOW_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def winnow_run(snapshot, config: dict, mode: str = "lora") -> dict:
    from corpus.bundled_model import register_bundled_model
    from jobs.runner import run_job
    from training.services import start_run

    run = start_run(method="sft", mode=mode, base_model=register_bundled_model(),
                    snapshot=snapshot, config=config, enqueue=False)
    run_job(run.job_id)
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit(f"winnow run failed: {run.error}")
    summary = run.metrics.get(split="summary").values
    tokens = max(m.values.get("num_tokens", 0) for m in run.metrics.filter(split="train"))
    return {"runtime": summary["train_runtime"], "tokens": tokens, "steps": run.step,
            "peak_gpu_memory_mb": summary.get("peak_gpu_memory_mb")}


ROUNDS = 2


def rate(measured: dict) -> float:
    return measured["tokens"] / measured["runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 6 if args.quick else 30
    batch, max_length = 4, 128
    import torch

    cuda = torch.cuda.is_available()
    dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    with tempfile.TemporaryDirectory(prefix="winnow-train-bench-") as tmp:
        tmp = Path(tmp)
        setup_django(tmp / "data")
        from corpus.bundled_model import bundled_model_dir
        from corpus.models import Snapshot

        snapshot = Snapshot.objects.create(name="bench", kind="sft", status="building")
        snapshot.directory.mkdir(parents=True)
        write_rows(snapshot.directory / "train.jsonl", steps * batch * 4)
        (snapshot.directory / "test.jsonl").write_text("")
        snapshot.counts = {"train": steps * batch * 4, "test": 0}
        snapshot.status = "ready"
        snapshot.save()
        common = {"max_steps": steps, "batch_size": batch, "max_length": max_length,
                  "save_steps": 10_000, "evaluate": False, "generation_eval": False,
                  "learning_rate": 2e-4, "dtype": dtype}

        cfg = {"out": str(tmp / "plain"), "steps": steps, "batch": batch, "max_length": max_length,
               "dtype": dtype}

        def plain_trl() -> dict:
            out = subprocess.run([sys.executable, "-c", PLAIN_TRL, str(bundled_model_dir()),
                                  str(snapshot.directory / "train.jsonl"), json.dumps(cfg)],
                                 capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if not line:
                raise SystemExit(f"plain TRL run failed:\n{out.stderr[-3000:]}")
            return json.loads(line[0][7:])

        # Winnow and plain TRL take turns, ROUNDS times, and each keeps its best run: one run
        # of either moved by up to 10% with what else the machine did at that moment.
        padded_runs, plain_runs = [], []
        for round_no in range(ROUNDS):
            print(f"round {round_no + 1}/{ROUNDS}: winnow (padded), {steps} steps ...", file=sys.stderr)
            padded_runs.append(winnow_run(snapshot, {**common, "packing": False}))
            print(f"round {round_no + 1}/{ROUNDS}: plain TRL script ...", file=sys.stderr)
            plain_runs.append(plain_trl())
        fill = padded_fill(snapshot.directory / "train.jsonl", batch, max_length, bundled_model_dir())
        padded = max(padded_runs, key=rate)
        plain = max(plain_runs, key=rate)
        print("winnow (packing) ...", file=sys.stderr)
        packed = winnow_run(snapshot, {**common, "packing": True})
        print("winnow (padding-free) ...", file=sys.stderr)
        padding_free = winnow_run(snapshot, {**common, "padding_free": True})
        gpu = {}
        if cuda:  # the GPU figures: LoRA against QLoRA (4-bit base), same data
            for mode in ("lora", "qlora"):
                print(f"winnow {mode} on the GPU ...", file=sys.stderr)
                gpu[mode] = winnow_run(snapshot, {**common, "packing": False}, mode=mode)

    figures = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "dtype": dtype,
        "steps": steps, "batch_size": batch, "max_length": max_length,
        # 1 / fill: what dropping the padding alone would gain at an equal cost per token
        "padded_batch_fill": round(fill, 3), "gain_from_padding_alone": round(1 / fill, 3),
        "winnow_tokens_per_s": round(rate(padded), 1),
        "winnow_steps_per_s": round(steps / padded["runtime"], 3),
        "plain_trl_tokens_per_s": round(rate(plain), 1),
        "plain_trl_steps_per_s": round(steps / plain["runtime"], 3),
        "winnow_vs_plain_trl": round(rate(padded) / rate(plain), 3),
        "winnow_rounds_tokens_per_s": [round(rate(m), 1) for m in padded_runs],
        "plain_trl_rounds_tokens_per_s": [round(rate(m), 1) for m in plain_runs],
        "packing_tokens_per_s": round(rate(packed), 1),
        "packing_vs_padded": round(rate(packed) / rate(padded), 3),
        "padding_free_tokens_per_s": round(rate(padding_free), 1),
        "padding_free_vs_padded": round(rate(padding_free) / rate(padded), 3),
    }
    for mode, measured in gpu.items():
        figures[f"{mode}_tokens_per_s"] = round(rate(measured), 1)
        figures[f"{mode}_peak_gpu_memory_mb"] = measured["peak_gpu_memory_mb"]
    figures["goals"] = {
        "winnow_vs_plain_trl>=0.95": figures["winnow_vs_plain_trl"] >= 0.95,
        "packing_or_padding_free_vs_padded>=1.5":
            max(figures["packing_vs_padded"], figures["padding_free_vs_padded"]) >= 1.5,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print(f"(took {time.monotonic() - start:.0f} s)", file=sys.stderr)
