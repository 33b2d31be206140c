"""Training throughput: SFT with LoRA on the bundled SmolLM2-135M-Instruct.

    python bench/training_bench.py            # 30 optimizer steps per measurement
    python bench/training_bench.py --quick    # 6 steps per measurement

Four measurements on the same variable-length prompt/completion data, same seed:
  1. Winnow: a TrainingRun through the real job and the trainer child process (padded batches);
     tokens/s and steps/s from the trainer's own runtime (model loading and evaluation excluded).
  2. Plain TRL: the same data, LoRA config and SFTConfig in a script of a dozen lines.
  3. Winnow with packing (TRL's best-fit-decreasing bins, each bin a row with per-document
     position_ids under SDPA: training/packing.py), on the same data.
  4. Winnow padding-free (each batch flattened into one row with position_ids, no packing).
Goals (issue 7): Winnow/plain TRL tokens/s >= 0.95; packing or padding-free >= 1.5x padded
tokens/s.
Runs on a fresh SQLite file in a temp folder. Ends with one line of JSON.
"""

import argparse
import json
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
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
args = SFTConfig(output_dir=cfg["out"], max_steps=cfg["steps"], per_device_train_batch_size=cfg["batch"],
                 learning_rate=2e-4, max_length=cfg["max_length"], bf16=False, gradient_checkpointing=False,
                 logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                 seed=42, packing=False, completion_only_loss=True, lr_scheduler_type="linear")
lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=lora)
out = trainer.train()
tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
print("RESULT " + json.dumps({"runtime": out.metrics["train_runtime"], "tokens": tokens}))
'''


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w") as handle:
        for _ in range(n):
            # Lengths spread from a few to ~100 tokens: what padding wastes and packing saves.
            prompt = sentence(rng, rng.choice([4, 8, 16, 40]))
            completion = " ".join(sentence(rng, rng.randint(3, 12)) for _ in range(rng.choice([1, 2, 4, 6])))
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")


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


def winnow_run(snapshot, config: dict) -> dict:
    from corpus.bundled_model import register_bundled_model
    from jobs.runner import run_job
    from training.services import start_run

    run = start_run(method="sft", mode="lora", base_model=register_bundled_model(),
                    snapshot=snapshot, config=config, enqueue=False)
    run_job(run.job_id)
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit(f"winnow run failed: {run.error}")
    summary = run.metrics.get(split="summary").values
    tokens = max(m.values.get("num_tokens", 0) for m in run.metrics.filter(split="train"))
    return {"runtime": summary["train_runtime"], "tokens": tokens, "steps": run.step}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 6 if args.quick else 30
    batch, max_length = 4, 128
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
                  "learning_rate": 2e-4}

        print(f"winnow (padded), {steps} steps ...", file=sys.stderr)
        padded = winnow_run(snapshot, {**common, "packing": False})
        print("plain TRL script ...", file=sys.stderr)
        cfg = {"out": str(tmp / "plain"), "steps": steps, "batch": batch, "max_length": max_length}
        out = subprocess.run([sys.executable, "-c", PLAIN_TRL, str(bundled_model_dir()),
                              str(snapshot.directory / "train.jsonl"), json.dumps(cfg)],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if not line:
            raise SystemExit(f"plain TRL run failed:\n{out.stderr[-3000:]}")
        plain = json.loads(line[0][7:])
        print("winnow (packing) ...", file=sys.stderr)
        packed = winnow_run(snapshot, {**common, "packing": True})
        print("winnow (padding-free) ...", file=sys.stderr)
        padding_free = winnow_run(snapshot, {**common, "padding_free": True})

    def rate(m):
        return m["tokens"] / m["runtime"]

    figures = {
        "device": "cpu", "steps": steps, "batch_size": batch, "max_length": max_length,
        "winnow_tokens_per_s": round(rate(padded), 1),
        "winnow_steps_per_s": round(steps / padded["runtime"], 3),
        "plain_trl_tokens_per_s": round(rate(plain), 1),
        "plain_trl_steps_per_s": round(steps / plain["runtime"], 3),
        "winnow_vs_plain_trl": round(rate(padded) / rate(plain), 3),
        "packing_tokens_per_s": round(rate(packed), 1),
        "packing_vs_padded": round(rate(packed) / rate(padded), 3),
        "padding_free_tokens_per_s": round(rate(padding_free), 1),
        "padding_free_vs_padded": round(rate(padding_free) / rate(padded), 3),
    }
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
