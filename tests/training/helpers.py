"""Driving runs in tests: start through the API, run the real worker (which starts the real
trainer child process), and check what a run left behind."""

from pathlib import Path

import torch

from tests.conftest import run_worker_batch
from training.models import TrainingRun

# Small but real: every run trains, checkpoints, evaluates and generates.
QUICK = {"max_steps": 2, "save_steps": 1, "max_length": 64, "generation_eval_prompts": 2,
         "generation_max_new_tokens": 8, "max_eval_rows": 4}


def start_and_finish(client, **body) -> TrainingRun:
    body.setdefault("config", {})
    body["config"] = {**QUICK, **body["config"]}
    response = client.post("/api/v1/training-runs", body, format="json")
    assert response.status_code == 201, response.content
    run_worker_batch()
    run = TrainingRun.objects.get(pk=response.json()["id"])
    if run.status != "succeeded":
        output = run.log_path.read_text(errors="replace")[-4000:] if run.log_path.is_file() else ""
        raise AssertionError(f"run {run.pk} {run.status}: {run.error}\n{output}")
    return run


def load_state(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


def changed_tensors(base_folder, trained_folder) -> list[str]:
    base, trained = load_state(base_folder), load_state(trained_folder)
    return [name for name, tensor in trained.items()
            if name in base and not torch.equal(base[name], tensor)]
