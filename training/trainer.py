"""What the trainer process does for one run: data, model, TRL trainer, train (resuming from the
last checkpoint), evaluate, save and register the result.

Runs only in the child process (`python -m training.run <id>`), never in the web or worker
process: a crash, an OOM or a kill -9 here leaves the worker standing, and the checkpoints on
disk let the next attempt resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import torch
from django.db import transaction
from django.utils import timezone

from corpus.models import RegisteredModel
from jobs.models import JobLogEntry

from .callbacks import DatabaseCallback, GradualUnfreezingCallback
from .config import GENERATION_METHODS
from .models import TrainingCheckpoint, TrainingMetric, TrainingRun
from .packing import PackedRowsCollator, row_packing_trainer

logger = logging.getLogger("winnow.training")
Method = TrainingRun.Method
Mode = TrainingRun.Mode

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3

# Columns each method hands to TRL; anything else in a snapshot row (source, margin for
# trainers that do not read it, ...) is dropped so TRL's column checks see what they expect.
KEEP_COLUMNS = {
    Method.SFT: ("messages", "prompt", "completion"),
    Method.PRETRAIN: ("text",),
    Method.REWARD: ("prompt", "chosen", "rejected", "margin"),
    Method.DPO: ("prompt", "chosen", "rejected"),
    Method.ORPO: ("prompt", "chosen", "rejected"),
    Method.KTO: ("prompt", "completion", "label"),
    Method.RLHF: ("prompt",),
}


class RunLog:
    """Short, human-readable events of a run, written to its job's log (the API's .../logs)."""

    def __init__(self, job_id: int | None):
        self.job_id = job_id

    def __call__(self, message: str, level: str = JobLogEntry.Level.INFO) -> None:
        logger.info(message)
        print(message, flush=True)
        if self.job_id:
            JobLogEntry.objects.create(job_id=self.job_id, level=level, message=message)


def set_stage(run: TrainingRun, stage: str) -> None:
    run.stage = stage
    TrainingRun.objects.filter(pk=run.pk).update(stage=stage)


# -- data ------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_split(run: TrainingRun, split: str, limit: int | None = None):
    """A snapshot split as a `datasets.Dataset` with only the columns TRL reads."""
    from datasets import Dataset

    rows = _read_jsonl(run.snapshot.directory / f"{split}.jsonl")
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        return None
    keep = KEEP_COLUMNS[run.method]
    present = [c for c in keep if c in rows[0]]
    if run.method == Method.SFT and "messages" in present:
        present = ["messages"]
    rows = [{c: row.get(c) for c in present} for row in rows]
    return Dataset.from_list(rows)


def held_out_prompts(run: TrainingRun, count: int) -> list:
    """Prompts for the generation evaluation: the test split's (train's if it has none), as
    chat messages or plain strings, without their answers."""
    rows = _read_jsonl(run.snapshot.directory / "test.jsonl") or _read_jsonl(
        run.snapshot.directory / "train.jsonl")
    prompts, seen = [], set()
    for row in rows:
        if "prompt" in row:
            prompt = row["prompt"]
        elif "messages" in row:
            messages = row["messages"]
            cut = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
            prompt = messages[:cut] if cut else messages
        else:
            continue
        key = json.dumps(prompt, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        prompts.append(prompt)
        if len(prompts) >= count:
            break
    return prompts


# -- model -----------------------------------------------------------------------------------


def resolve_dtype(config: dict):
    name = config["dtype"]
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_model(run: TrainingRun, tokenizer, dtype):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = run.base_model.path
    kwargs = {"dtype": dtype}
    if run.mode == Mode.QLORA:
        kwargs["quantization_config"] = quantization_config()
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if run.method == Method.REWARD:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if run.mode == Mode.QLORA:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=run.config["gradient_checkpointing"])
    return model


def decoder_layers(model) -> list:
    """The model's stack of transformer blocks (bottom first)."""
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    for name in ("layers", "h", "blocks"):
        layers = getattr(inner, name, None)
        if layers is not None:
            return list(layers)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


def apply_mode(run: TrainingRun, model, log: RunLog):
    config = run.config
    if run.mode in (Mode.LORA, Mode.QLORA):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config["lora_r"], lora_alpha=config["lora_alpha"], lora_dropout=config["lora_dropout"],
            target_modules=config["lora_target_modules"],
            task_type="SEQ_CLS" if run.method == Method.REWARD else "CAUSAL_LM",
            # The reward head is new: it must train and be saved with the adapter.
            modules_to_save=["score"] if run.method == Method.REWARD else None,
        )
        model = get_peft_model(model, lora)
    elif run.mode == Mode.PARTIAL:
        layers = decoder_layers(model)
        if config["freeze_first_layers"] is not None:
            k = config["freeze_first_layers"]
            model.get_input_embeddings().requires_grad_(False)
            for layer in layers[:k]:
                layer.requires_grad_(False)
        else:
            names = config["trainable_modules"]
            for name, param in model.named_parameters():
                param.requires_grad_(any(n in name for n in names))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"{run.mode}: {trainable:,} of {total:,} parameters trainable "
        f"({100 * trainable / max(total, 1):.2f}%)")
    return model


def layerwise_optimizer(run: TrainingRun, model):
    """AdamW with per-layer learning rates (layer l of L gets lr * decay^(L - l); embeddings
    the lowest, the head the full rate), holding every parameter so gradual unfreezing can
    switch layers on later. Returns (optimizer, layer groups for unfreezing)."""
    config = run.config
    decay = config["layerwise_lr_decay"] or 1.0
    lr = config["learning_rate"]
    layers = decoder_layers(model)
    count = len(layers)
    layer_of = {}
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            layer_of[id(param)] = index
    embedding = {id(p) for p in model.get_input_embeddings().parameters()}
    groups: dict[float, list] = {}
    per_layer: list[list] = [[] for _ in range(count)]
    for param in model.parameters():
        if run.mode == Mode.PARTIAL and not param.requires_grad:
            continue  # partial mode's frozen part never trains
        if id(param) in layer_of:
            index = layer_of[id(param)]
            scale = decay ** (count - index)
            per_layer[index].append(param)
        elif id(param) in embedding:
            scale = decay ** (count + 1)
            per_layer[0].append(param)
        else:
            scale = 1.0
        groups.setdefault(scale, []).append(param)
    param_groups = [
        {"params": params, "lr": lr * scale, "weight_decay": config["weight_decay"]}
        for scale, params in sorted(groups.items())
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=lr)
    return optimizer, [g for g in per_layer if g]


# -- trainer ---------------------------------------------------------------------------------


def common_arguments(run: TrainingRun, dtype) -> dict:
    config = run.config
    cuda = torch.cuda.is_available()
    warmup = config["warmup_steps"] or config["warmup_ratio"]
    return {
        "output_dir": str(run.checkpoint_dir),
        "num_train_epochs": config["epochs"],
        "max_steps": config["max_steps"],
        "per_device_train_batch_size": config["batch_size"],
        "per_device_eval_batch_size": config["eval_batch_size"] or config["batch_size"],
        "gradient_accumulation_steps": config["grad_accumulation"],
        "learning_rate": config["learning_rate"],
        "lr_scheduler_type": config["scheduler"],
        "warmup_steps": warmup,
        "weight_decay": config["weight_decay"],
        "max_grad_norm": config["max_grad_norm"],
        "seed": config["seed"],
        # TRL's configs default to bf16=True and gradient checkpointing on: say what we mean.
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "gradient_checkpointing": config["gradient_checkpointing"],
        "logging_steps": config["logging_steps"],
        "save_strategy": "steps",
        "save_steps": config["save_steps"],
        "save_total_limit": config["save_total_limit"],
        "eval_strategy": "no",     # evaluation runs before and after, see evaluate()
        "report_to": [],
        "use_cpu": not cuda,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "optim": "paged_adamw_8bit" if run.mode == Mode.QLORA else "adamw_torch",
    }


def truncate_prepared(dataset, max_length: int):
    """What SFTTrainer does to its prepared rows when it is given a max_length: keep the first
    max_length tokens and labels, and drop the rows left with no label to learn from."""
    def truncate(row):
        return {"input_ids": row["input_ids"][:max_length], "labels": row["labels"][:max_length]}

    dataset = dataset.map(truncate)
    return dataset.filter(lambda row: any(label != -100 for label in row["labels"]))


def build_trainer(run: TrainingRun, model, tokenizer, train_ds, eval_ds, callbacks, dtype,
                  optimizers=(None, None)):
    import trl

    config = run.config
    args = common_arguments(run, dtype)
    common = {"model": model, "train_dataset": train_ds, "eval_dataset": eval_ds,
              "processing_class": tokenizer, "callbacks": callbacks, "optimizers": optimizers}
    method = run.method
    if method in (Method.SFT, Method.PRETRAIN):
        padding_free = config.get("padding_free", False) and not config.get("packing", False)
        # TRL 1.16 refuses max_length with padding-free batches (it would not enforce it):
        # give it none, and truncate the rows it prepared instead.
        extra = {"max_length": None if padding_free else config["max_length"],
                 "packing": config.get("packing", False), "padding_free": padding_free}
        if method == Method.SFT:
            extra["completion_only_loss"] = config["completion_only_loss"]
        # Packed bins stay rows unless flash attention's variable-length kernels are there to
        # take TRL's one flattened row (training/packing.py says why).
        packed_rows = extra["packing"] and "flash" not in str(getattr(model.config, "_attn_implementation", ""))
        trainer_class = row_packing_trainer(trl.SFTTrainer) if packed_rows else trl.SFTTrainer
        trainer = trainer_class(args=trl.SFTConfig(**args, **extra), **common)
        if packed_rows:
            trainer.data_collator = PackedRowsCollator(tokenizer.pad_token_id)
        if padding_free:
            trainer.train_dataset = truncate_prepared(trainer.train_dataset, config["max_length"])
            if trainer.eval_dataset is not None:
                trainer.eval_dataset = truncate_prepared(trainer.eval_dataset, config["max_length"])
        return trainer
    if method == Method.REWARD:
        return trl.RewardTrainer(
            args=trl.RewardConfig(**args, max_length=config["max_length"]), **common)
    if method == Method.DPO:
        dpo = trl.DPOConfig(
            **args, max_length=config["max_length"], beta=config["beta"],
            loss_type=[config["loss_type"]],
            precompute_ref_log_probs=config["precompute_ref_log_probs"])
        return trl.DPOTrainer(args=dpo, **common)
    if method == Method.KTO:
        kto = trl.KTOConfig(
            **args, max_length=config["max_length"], beta=config["beta"],
            desirable_weight=config["desirable_weight"],
            undesirable_weight=config["undesirable_weight"])
        return trl.KTOTrainer(args=kto, **common)
    if method == Method.ORPO:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        orpo = ORPOConfig(**args, max_length=config["max_length"], beta=config["beta"])
        return ORPOTrainer(args=orpo, **common)
    if method == Method.RLHF:
        from .rewards import make_reward_function

        reward_funcs = [run.reward_model.path]
        reward_funcs += [make_reward_function(rule) for rule in config["rule_rewards"]]
        rl_args = {**args, "num_generations": config["num_generations"],
                   "max_completion_length": config["max_completion_length"],
                   "beta": config["beta"], "temperature": config["temperature"]}
        common.pop("optimizers")
        if config["algorithm"] == "grpo":
            return trl.GRPOTrainer(args=trl.GRPOConfig(**rl_args), reward_funcs=reward_funcs,
                                   optimizers=optimizers, **common)
        return trl.RLOOTrainer(args=trl.RLOOConfig(**rl_args), reward_funcs=reward_funcs,
                               optimizers=optimizers, **common)
    raise ValueError(f"unknown method {method}")


# -- evaluation ------------------------------------------------------------------------------


def summarize_eval(method: str, metrics: dict) -> dict:
    out = {k.removeprefix("eval_"): v for k, v in metrics.items()
           if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))}
    loss = out.get("loss")
    if method in (Method.SFT, Method.PRETRAIN) and loss is not None and loss < 50:
        out["perplexity"] = math.exp(loss)
    return out


def evaluate(trainer, run: TrainingRun) -> dict | None:
    if trainer.eval_dataset is None or not run.config["evaluate"]:
        return None
    if run.method == Method.RLHF:
        return None  # RLOO/GRPO evaluate by generating; the generation evaluation covers it
    return summarize_eval(run.method, trainer.evaluate())


# -- artifacts -------------------------------------------------------------------------------


def library_versions() -> dict:
    import datasets
    import peft
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "datasets": datasets.__version__}


def snapshot_sha256(run: TrainingRun) -> str:
    if run.snapshot.content_hash:
        return run.snapshot.content_hash
    digest = hashlib.sha256()
    for name in ("train.jsonl", "test.jsonl"):
        path = run.snapshot.directory / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_manifest(run: TrainingRun, folder: Path, **extra) -> None:
    manifest = {
        "training_run": run.pk, "method": run.method, "mode": run.mode,
        "base_model": {"id": run.base_model_id, "name": run.base_model.name,
                       "path": run.base_model.path},
        "snapshot": {"id": run.snapshot_id, "kind": run.snapshot.kind,
                     "sha256": snapshot_sha256(run)},
        "config": run.config, "versions": library_versions(), **extra,
    }
    (folder / "winnow-run.json").write_text(json.dumps(manifest, indent=2, default=str))


def save_artifacts(run: TrainingRun, trainer, tokenizer, log: RunLog) -> dict:
    """Write the artifact folder(s) atomically (staging, then rename) and return what to
    register: [(folder, format)]."""
    model = trainer.model
    adapter = run.mode in (Mode.LORA, Mode.QLORA)
    staging = run.artifact_dir.with_name("artifact.partial")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    tokenizer.save_pretrained(str(staging))
    write_manifest(run, staging, format="adapter" if adapter else "full")
    shutil.rmtree(run.artifact_dir, ignore_errors=True)
    staging.rename(run.artifact_dir)
    out = {"artifact": (run.artifact_dir, "adapter" if adapter else "full")}
    # A reward model feeds RLHF as a full folder, so its adapter is always merged too.
    merge = adapter and (run.config["merge_adapter"] or run.method == Method.REWARD)
    if merge and run.mode == Mode.QLORA:
        log("merging a QLoRA adapter needs the base in full precision: reloading it")
        merged = _merge_into_fresh_base(run, tokenizer)
    elif merge:
        merged = model.merge_and_unload()
    if merge:
        staging = run.merged_dir.with_name("merged.partial")
        shutil.rmtree(staging, ignore_errors=True)
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        write_manifest(run, staging, format="full", merged_from=str(run.artifact_dir))
        shutil.rmtree(run.merged_dir, ignore_errors=True)
        staging.rename(run.merged_dir)
        out["merged"] = (run.merged_dir, "full")
    return out


def _merge_into_fresh_base(run: TrainingRun, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if run.method == Method.REWARD else AutoModelForCausalLM
    kwargs = {"num_labels": 1} if run.method == Method.REWARD else {}
    base = cls.from_pretrained(run.base_model.path, dtype=torch.bfloat16, **kwargs)
    return PeftModel.from_pretrained(base, str(run.artifact_dir)).merge_and_unload()


def register_artifacts(run: TrainingRun, folders: dict) -> None:
    base = run.base_model
    metadata = {"training_run": run.pk, "snapshot": run.snapshot_id, "method": run.method,
                "mode": run.mode, "snapshot_sha256": snapshot_sha256(run)}
    stem = f"{base.name}-{run.method}-run{run.pk}"
    with transaction.atomic():
        folder, fmt = folders["artifact"]
        artifact, _ = RegisteredModel.objects.update_or_create(
            name=stem, defaults={"origin": RegisteredModel.Origin.TRAINED, "format": fmt,
                                 "path": str(folder), "base": base, "metadata": metadata})
        merged = None
        if "merged" in folders:
            folder, fmt = folders["merged"]
            merged, _ = RegisteredModel.objects.update_or_create(
                name=f"{stem}-merged",
                defaults={"origin": RegisteredModel.Origin.TRAINED, "format": fmt,
                          "path": str(folder), "base": base,
                          "metadata": {**metadata, "merged_from": artifact.pk}})
        TrainingRun.objects.filter(pk=run.pk).update(artifact=artifact, merged_model=merged)


# -- the run ---------------------------------------------------------------------------------


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written to the end: the trainer writes trainer_state.json
    last, so a folder without it is what a kill during saving left behind."""
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (path / "trainer_state.json").is_file():
            steps.append((int(suffix), path))
    return str(max(steps)[1]) if steps else None


def train_run(run_id: int, job_id: int | None) -> int:
    from transformers import set_seed

    run = TrainingRun.objects.select_related("base_model", "snapshot", "reward_model").get(pk=run_id)
    log = RunLog(job_id)
    config = run.config
    if run.artifact_id and run.artifact_dir.is_dir() and "after" in (run.evaluation or {}):
        log("this run already finished and registered its model; nothing to do")
        return EXIT_OK
    run.output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config["seed"])
    dtype = resolve_dtype(config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"run {run.pk}: {run.method}/{run.mode} of {run.base_model.name} on snapshot "
        f"{run.snapshot_id} ({run.snapshot.kind}), {device}, {str(dtype).removeprefix('torch.')}")

    set_stage(run, "loading")
    tokenizer = load_tokenizer(run.base_model.path)
    train_ds = load_split(run, "train")
    if train_ds is None:
        log("the snapshot's train split is empty", JobLogEntry.Level.ERROR)
        return EXIT_FAILED
    eval_ds = load_split(run, "test", limit=config["max_eval_rows"])
    if run.method == Method.KTO:
        config = _kto_weights(run, config, log)
    model = load_model(run, tokenizer, dtype)
    model = apply_mode(run, model, log)

    optimizers = (None, None)
    callbacks = [DatabaseCallback(run, job_id)]
    if config.get("layerwise_lr_decay") or config.get("gradual_unfreezing"):
        optimizer, layer_groups = layerwise_optimizer(run, model)
        optimizers = (optimizer, None)
        if config["gradual_unfreezing"]:
            callbacks.append(GradualUnfreezingCallback(layer_groups, config["unfreeze_every_steps"]))
            log(f"gradual unfreezing: {len(layer_groups)} layer groups, one more every "
                f"{config['unfreeze_every_steps']} steps")
    trainer = build_trainer(run, model, tokenizer, train_ds, eval_ds, callbacks, dtype, optimizers)

    evaluation = dict(run.evaluation or {})
    last = last_complete_checkpoint(run.checkpoint_dir)
    if "before" not in evaluation and not last:
        set_stage(run, "evaluating before training")
        before = evaluate(trainer, run)
        if before is not None:
            evaluation["before"] = before
            TrainingRun.objects.filter(pk=run.pk).update(evaluation=evaluation)
            log(f"evaluation before training: {_brief(before)}")

    set_stage(run, "training")
    if last:
        resumed_at = int(Path(last).name.rsplit("-", 1)[-1])
        # Points logged after the checkpoint are trained again: drop them, or the curve doubles.
        TrainingMetric.objects.filter(run_id=run.pk, step__gt=resumed_at).delete()
        TrainingCheckpoint.objects.filter(run_id=run.pk, step__gt=resumed_at).delete()
        log(f"resuming from {Path(last).name}")
    trainer.train(resume_from_checkpoint=last)
    if callbacks[0].cancelled:
        log(f"cancelled at step {trainer.state.global_step}; checkpoint saved, resume continues "
            "from it")
        return EXIT_CANCELLED

    set_stage(run, "evaluating after training")
    after = evaluate(trainer, run)
    if after is not None:
        evaluation["after"] = after
        if "before" in evaluation:
            evaluation["improvement"] = _improvement(evaluation["before"], after)
        log(f"evaluation after training: {_brief(after)}")
    else:
        evaluation["after"] = {}
    TrainingRun.objects.filter(pk=run.pk).update(evaluation=evaluation)

    # Before saving: merging an adapter for serving folds it into the model in place.
    if run.method in GENERATION_METHODS and config["generation_eval"]:
        set_stage(run, "generation evaluation")
        from .evaluation import generation_evaluation

        generation = generation_evaluation(run, trainer.model, tokenizer, log)
        evaluation["generation"] = generation
        TrainingRun.objects.filter(pk=run.pk).update(
            evaluation=evaluation, win_rate=generation["win_rate"])

    set_stage(run, "saving")
    folders = save_artifacts(run, trainer, tokenizer, log)
    register_artifacts(run, folders)
    TrainingRun.objects.filter(pk=run.pk).update(stage="done", finished_at=timezone.now())
    log(f"saved {', '.join(str(f) for f, _ in folders.values())}")
    return EXIT_OK


def _kto_weights(run: TrainingRun, config: dict, log: RunLog) -> dict:
    """KTO's paper: keep desirable_weight·n_desirable / undesirable_weight·n_undesirable in
    [1, 4/3]. Weights the request left unset come from the snapshot's counts."""
    counts = run.snapshot.counts or {}
    desirable, undesirable = counts.get("desirable") or 1, counts.get("undesirable") or 1
    config = dict(config)
    if config["desirable_weight"] is None and config["undesirable_weight"] is None:
        if desirable >= undesirable:
            config["desirable_weight"] = 1.0
            config["undesirable_weight"] = round(desirable / undesirable, 4)
        else:
            config["undesirable_weight"] = 1.0
            config["desirable_weight"] = round(undesirable / desirable, 4)
    config["desirable_weight"] = config["desirable_weight"] or 1.0
    config["undesirable_weight"] = config["undesirable_weight"] or 1.0
    log(f"KTO weights from the snapshot's counts ({desirable} desirable, {undesirable} "
        f"undesirable): desirable {config['desirable_weight']}, undesirable "
        f"{config['undesirable_weight']}")
    run.config = config
    TrainingRun.objects.filter(pk=run.pk).update(config=config)
    return config


def _brief(metrics: dict) -> str:
    keys = [k for k in ("loss", "perplexity", "accuracy", "rewards/accuracies", "rewards/margins")
            if k in metrics]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys) or "no metrics"


def _improvement(before: dict, after: dict) -> dict:
    """Per metric: the change, and whether it moved the right way (lower loss, higher
    accuracy/margins)."""
    higher_better = ("accuracy", "accuracies", "margins", "rewards/chosen")
    out = {}
    for key, old in before.items():
        new = after.get(key)
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
            continue
        if key in ("epoch",) or key.startswith(("runtime", "samples", "steps")):
            continue
        better_up = any(h in key for h in higher_better)
        lower_better = "loss" in key or key == "perplexity"
        if not better_up and not lower_better:
            continue
        out[key] = {"before": old, "after": new, "change": new - old,
                    "better": None if new == old else (new > old) if better_up else (new < old)}
    return out
