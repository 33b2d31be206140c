"""Hyper-parameters: defaults per method, and validation before anything is written.

A run's `config` is one flat dict: the request's values over the method's defaults. Everything
that can be checked without training is checked here (ranges, the snapshot's kind, LoRA target
modules against the base model's real module names, QLoRA's need for CUDA), so a bad request is
a 400 naming the field and the reason, never a run that fails minutes later.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from corpus.models import RegisteredModel, Snapshot

from .models import TrainingRun

Method = TrainingRun.Method
Mode = TrainingRun.Mode

# Which snapshot kinds each method reads (TRL's columns, see DESIGN.md "Formats").
SNAPSHOT_KINDS: dict[str, tuple[str, ...]] = {
    Method.SFT: ("sft",),
    Method.PRETRAIN: ("text",),
    Method.REWARD: ("preference",),
    Method.RLHF: ("preference", "sft"),     # only the prompts are used
    Method.DPO: ("preference",),
    Method.KTO: ("binary",),
    Method.ORPO: ("preference",),
}
SNAPSHOT_COLUMNS = {
    "sft": "messages, or prompt/completion",
    "text": "text",
    "preference": "prompt/chosen/rejected",
    "binary": "prompt/completion/label",
}
# Methods whose result answers prompts, so a generation evaluation against the base makes sense.
GENERATION_METHODS = (Method.SFT, Method.DPO, Method.KTO, Method.ORPO, Method.RLHF)

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
              "constant_with_warmup", "inverse_sqrt")
DTYPES = ("auto", "float32", "bfloat16", "float16")

# TRL's own default learning rates per trainer (NOTES.md), except SFT/CPT with LoRA, where
# 2e-5 barely moves an adapter in a few hundred steps; LoRA runs default to 2e-4 (the PEFT docs').
LEARNING_RATES = {
    Method.SFT: 2e-5, Method.PRETRAIN: 2e-5, Method.REWARD: 1e-4, Method.RLHF: 1e-6,
    Method.DPO: 1e-6, Method.KTO: 1e-6, Method.ORPO: 1e-6,
}
LORA_LEARNING_RATES = {
    Method.SFT: 2e-4, Method.PRETRAIN: 2e-4, Method.REWARD: 1e-4, Method.RLHF: 1e-5,
    Method.DPO: 5e-5, Method.KTO: 5e-5, Method.ORPO: 5e-5,
}

COMMON_DEFAULTS = {
    "epochs": 1.0,
    "max_steps": -1,                 # > 0 overrides epochs
    "batch_size": 2,
    "eval_batch_size": None,         # default: batch_size
    "grad_accumulation": 1,
    "max_length": 512,
    "warmup_ratio": 0.0,
    "warmup_steps": 0,
    "scheduler": "linear",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "seed": 42,
    "dtype": "auto",                 # auto: bfloat16 on a GPU that has it, else float32
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_steps": 50,                # a checkpoint every N optimizer steps
    "save_total_limit": 2,
    "evaluate": True,                # eval loss etc. on the test split before and after
    "max_eval_rows": 200,
    # generation evaluation (generation methods): base vs trained on held-out prompts
    "generation_eval": True,
    "generation_eval_prompts": 8,
    "generation_max_new_tokens": 64,
    "judge_rule": "max_sentences:3",
    # modes
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
    "merge_adapter": False,          # also write the adapter merged into its base, for serving
    "freeze_first_layers": None,     # partial: freeze the embeddings and the first k layers
    "trainable_modules": None,       # partial: train only modules whose names contain these
    "layerwise_lr_decay": None,      # e.g. 0.9: layer l gets lr * decay^(L - l)
    "gradual_unfreezing": False,     # ULMFiT: unfreeze one more layer (from the top) ...
    "unfreeze_every_steps": 10,      # ... every N optimizer steps
}

METHOD_DEFAULTS = {
    Method.SFT: {"completion_only_loss": True, "packing": False, "padding_free": False},
    Method.PRETRAIN: {"packing": True},
    Method.REWARD: {},
    Method.RLHF: {"algorithm": "rloo", "num_generations": 2, "max_completion_length": 32,
                  "beta": 0.0, "rule_rewards": [], "temperature": 1.0},
    Method.DPO: {"beta": 0.1, "precompute_ref_log_probs": False, "loss_type": "sigmoid"},
    Method.KTO: {"beta": 0.1, "desirable_weight": None, "undesirable_weight": None},
    Method.ORPO: {"beta": 0.1},
}

# name -> (type, min, max); None bounds are open. Types: int, float, bool, str, list, choice.
RULES: dict[str, tuple] = {
    "epochs": (float, 0.01, 1000),
    "max_steps": (int, -1, 10_000_000),
    "batch_size": (int, 1, 4096),
    "eval_batch_size": (int, 1, 4096),
    "grad_accumulation": (int, 1, 4096),
    "max_length": (int, 8, 131_072),
    "warmup_ratio": (float, 0.0, 0.9),
    "warmup_steps": (int, 0, 10_000_000),
    "scheduler": ("choice", SCHEDULERS),
    "learning_rate": (float, 1e-9, 1.0),
    "weight_decay": (float, 0.0, 1.0),
    "max_grad_norm": (float, 0.0, 1000.0),
    "seed": (int, 0, 2**32 - 1),
    "dtype": ("choice", DTYPES),
    "gradient_checkpointing": (bool,),
    "logging_steps": (int, 1, 100_000),
    "save_steps": (int, 1, 10_000_000),
    "save_total_limit": (int, 1, 1000),
    "evaluate": (bool,),
    "max_eval_rows": (int, 1, 1_000_000),
    "generation_eval": (bool,),
    "generation_eval_prompts": (int, 1, 1000),
    "generation_max_new_tokens": (int, 1, 4096),
    "judge_rule": (str,),
    "lora_r": (int, 1, 1024),
    "lora_alpha": (float, 0.01, 4096),
    "lora_dropout": (float, 0.0, 0.9),
    "lora_target_modules": ("modules",),
    "merge_adapter": (bool,),
    "freeze_first_layers": (int, 0, 10_000),
    "trainable_modules": ("names",),
    "layerwise_lr_decay": (float, 0.01, 1.0),
    "gradual_unfreezing": (bool,),
    "unfreeze_every_steps": (int, 1, 10_000_000),
    "completion_only_loss": (bool,),
    "packing": (bool,),
    "padding_free": (bool,),
    "algorithm": ("choice", ("rloo", "grpo")),
    "num_generations": (int, 2, 64),
    "max_completion_length": (int, 1, 8192),
    "beta": (float, 0.0, 100.0),
    "rule_rewards": ("names",),
    "temperature": (float, 0.01, 10.0),
    "precompute_ref_log_probs": (bool,),
    "loss_type": ("choice", ("sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard",
                             "nca_pair", "apo_zero", "apo_down")),
    "desirable_weight": (float, 0.01, 100.0),
    "undesirable_weight": (float, 0.01, 100.0),
}


class ConfigError(Exception):
    """A request that cannot become a run: `errors` maps field names to reasons."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def defaults_for(method: str, mode: str) -> dict:
    values = {**COMMON_DEFAULTS, **METHOD_DEFAULTS[method]}
    lora = mode in (Mode.LORA, Mode.QLORA)
    values["learning_rate"] = (LORA_LEARNING_RATES if lora else LEARNING_RATES)[method]
    if method == Method.KTO:
        values["batch_size"] = 4  # KTO estimates its KL term from the other rows of a batch
    return values


def _coerce(name: str, value, rule: tuple):
    kind = rule[0]
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if kind is int and (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole number")
        value = kind(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        low, high = rule[1], rule[2]
        if value < low or value > high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip()
    if kind == "choice":
        if value not in rule[1]:
            raise ValueError(f"must be one of {', '.join(rule[1])}")
        return value
    if kind in ("names", "modules"):
        if kind == "modules" and value == "all-linear":
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            hint = ' or "all-linear"' if kind == "modules" else ""
            raise ValueError(f"must be a list of names{hint}")
        return list(value)
    raise AssertionError(kind)


def cuda_available() -> bool:
    """Whether this deployment trains on CUDA. WINNOW_TRAINING_CUDA overrides detection for a
    web host without a GPU that feeds GPU workers."""
    forced = getattr(settings, "WINNOW_TRAINING_CUDA", None)
    if forced is not None:
        return bool(forced)
    import torch

    return torch.cuda.is_available()


@lru_cache(maxsize=16)
def model_structure(path: str, mtime: float) -> dict:
    """Layer count, architecture and linear-module names of a model folder, read from its
    config on the meta device (no weights are loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = set()
    names = set()
    for name, module in model.named_modules():
        if not name:
            continue
        names.add(name)
        if isinstance(module, torch.nn.Linear):
            linear.add(name.rsplit(".", 1)[-1])
    return {
        "num_layers": getattr(config, "num_hidden_layers", None),
        "linear_modules": sorted(linear),
        "module_names": sorted(names),
        "model_type": config.model_type,
    }


def check_model_folder(path: str) -> str | None:
    """Why a folder cannot be loaded as a model, or None."""
    folder = Path(path)
    if not folder.is_dir():
        return f"no such folder: {path}"
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        return None  # an adapter folder; its base is checked separately
    if not (folder / "config.json").is_file():
        return f"{path} holds no config.json (not a Hugging Face model folder)"
    try:
        json.loads((folder / "config.json").read_text())
        from transformers import AutoConfig

        AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot load"
        return f"its config does not load: {type(exc).__name__}: {exc}"
    return None


def validate_request(
    *, method: str, mode: str, base_model: RegisteredModel, snapshot: Snapshot,
    overrides: dict, reward_model: RegisteredModel | None = None,
) -> dict:
    """The resolved config for a run, or ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    if method not in Method.values:
        raise ConfigError({"method": f"must be one of {', '.join(Method.values)}"})
    if mode not in Mode.values:
        raise ConfigError({"mode": f"must be one of {', '.join(Mode.values)}"})

    expected = SNAPSHOT_KINDS[method]
    if snapshot.kind not in expected:
        wanted = " or ".join(f"a {k} snapshot ({SNAPSHOT_COLUMNS[k]} rows)" for k in expected)
        errors["snapshot"] = f"{method} trains on {wanted}; snapshot {snapshot.pk} is {snapshot.kind}"
    elif snapshot.status != Snapshot.Status.READY:
        errors["snapshot"] = f"snapshot {snapshot.pk} is {snapshot.status}, not ready"
    elif not (snapshot.directory / "train.jsonl").is_file():
        errors["snapshot"] = f"snapshot {snapshot.pk} has no train.jsonl in {snapshot.directory}"

    if base_model.format != RegisteredModel.Format.FULL:
        errors["base_model"] = (f"{base_model.name} is an adapter; train on a full model "
                                f"(its base, or a merged model)")
    else:
        problem = check_model_folder(base_model.path)
        if problem:
            errors["base_model"] = problem

    if mode == Mode.QLORA and not cuda_available():
        errors["mode"] = ("qlora needs a CUDA GPU (bitsandbytes 4-bit NF4 kernels); this "
                          "machine has none: use mode lora")

    config = defaults_for(method, mode)
    unknown = sorted(set(overrides) - set(RULES))
    for name in unknown:
        errors[f"config.{name}"] = "unknown hyper-parameter"
    not_for_method = sorted(
        name for name in overrides
        if name in RULES and name not in config and name != "learning_rate"
    )
    for name in not_for_method:
        errors[f"config.{name}"] = f"does not apply to method {method}"
    for name, value in overrides.items():
        if name in unknown or name in not_for_method:
            continue
        try:
            config[name] = _coerce(name, value, RULES[name])
        except ValueError as exc:
            errors[f"config.{name}"] = str(exc)
    if errors:
        raise ConfigError(errors)

    _check_combinations(method, mode, config, snapshot, base_model, reward_model, errors)
    if errors:
        raise ConfigError(errors)
    return config


def _check_combinations(method, mode, config, snapshot, base_model, reward_model, errors):
    lora = mode in (Mode.LORA, Mode.QLORA)
    if method == Method.KTO:
        if config["batch_size"] < 2:
            errors["config.batch_size"] = ("KTO needs batch_size of at least 2: it estimates "
                                           "its KL term from the other rows of each batch")
        counts = snapshot.counts or {}
        if not counts.get("desirable") or not counts.get("undesirable"):
            errors["snapshot"] = ("KTO needs desirable and undesirable examples; the snapshot's "
                                  f"counts have desirable={counts.get('desirable')}, "
                                  f"undesirable={counts.get('undesirable')}")
    if method == Method.RLHF:
        if reward_model is None:
            errors["reward_model"] = "RLHF needs a reward model (a succeeded reward run's model)"
        elif reward_model.format != RegisteredModel.Format.FULL:
            errors["reward_model"] = "must be a full-format model (reward runs register one)"
        elif reward_model.metadata.get("method") != Method.REWARD:
            errors["reward_model"] = f"{reward_model.name} was not produced by a reward run"
        if config["batch_size"] * config["grad_accumulation"] % config["num_generations"]:
            errors["config.num_generations"] = (
                "batch_size × grad_accumulation must be a multiple of num_generations")
        from .rewards import parse_judge_rule

        for name in config["rule_rewards"]:
            try:
                parse_judge_rule(name)
            except ValueError as exc:
                errors["config.rule_rewards"] = str(exc)
    elif reward_model is not None:
        errors["reward_model"] = "only RLHF runs take a reward model"

    if not lora:
        for name in ("merge_adapter",):
            if config[name]:
                errors[f"config.{name}"] = "only LoRA and QLoRA runs produce an adapter to merge"
    if mode != Mode.PARTIAL:
        for name in ("freeze_first_layers", "trainable_modules"):
            if config[name] is not None:
                errors[f"config.{name}"] = f"only for mode partial (this run is {mode})"
    elif (config["freeze_first_layers"] is None) == (config["trainable_modules"] is None):
        errors["config.freeze_first_layers"] = (
            "partial mode needs exactly one of freeze_first_layers or trainable_modules")
    if lora and (config["layerwise_lr_decay"] or config["gradual_unfreezing"]):
        errors["mode"] = ("layer-wise LR decay and gradual unfreezing work on full or partial "
                          "fine-tuning, not on adapters")
    if config["dtype"] == "float16" and not cuda_available():
        errors["config.dtype"] = "float16 training needs a CUDA GPU; use float32 or bfloat16"
    if config.get("packing") and config.get("padding_free"):
        errors["config.padding_free"] = "choose packing or padding_free, not both"
    from .rewards import parse_judge_rule

    try:
        parse_judge_rule(config["judge_rule"])
    except ValueError as exc:
        errors["config.judge_rule"] = str(exc)

    if "base_model" in errors:
        return
    folder = Path(base_model.path)
    structure = model_structure(str(folder), (folder / "config.json").stat().st_mtime)
    layers = structure["num_layers"]
    if lora and config["lora_target_modules"] != "all-linear":
        missing = [m for m in config["lora_target_modules"]
                   if m not in structure["linear_modules"]]
        if missing:
            errors["config.lora_target_modules"] = (
                f"unknown target modules {missing}; {base_model.name} has linear modules "
                f"{structure['linear_modules']}")
    if mode == Mode.PARTIAL:
        k = config["freeze_first_layers"]
        if k is not None and layers is not None and k >= layers:
            errors["config.freeze_first_layers"] = (
                f"must be below the model's {layers} layers (else nothing trains)")
        names = config["trainable_modules"]
        if names:
            missing = [n for n in names
                       if not any(n in full for full in structure["module_names"])]
            if missing:
                errors["config.trainable_modules"] = (
                    f"no module of {base_model.name} matches {missing}")
