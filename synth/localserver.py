"""How a local model server is started: importable without Django (winnow run uses it before
Django is set up)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path


def transformers_executable() -> str:
    beside = Path(sys.executable).parent / "transformers"
    if beside.exists():
        return str(beside)
    found = shutil.which("transformers")
    if not found:
        raise RuntimeError("the `transformers` command is missing (pip install 'transformers[serving]')")
    return found


def server_command(folder: str | Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """`transformers serve` with continuous batching (several requests share each forward
    pass: ~2.5x the single-stream throughput on CPU), on loopback.

    The KV cache is sized explicitly: left to itself continuous batching reserved 8-11 GB of
    RAM for a 135M model; 256 blocks of 32 tokens (8k tokens in flight, ~0.4 GB) measured the
    same speed."""
    return [
        transformers_executable(), "serve", "--continuous-batching", "--device", "cpu",
        "--cb-num-blocks", os.environ.get("WINNOW_LOCAL_LLM_CB_BLOCKS", "256"), "--cb-block-size", "32",
        "--host", host, "--port", str(port), "--log-level", "warning", str(folder),
    ]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def usable_port(preferred: int, host: str = "127.0.0.1") -> int:
    """`preferred` if it is free, else a free port (two `winnow run`s on one host, or a test
    suite beside a running instance, must not fight over the model server's port)."""
    if port_is_free(preferred, host):
        return preferred
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    print(f"winnow: port {preferred} is taken; serving the bundled model on {port}", flush=True)
    return port


def server_env() -> dict:
    """Offline: the folder is all the server may load; never reach for a hub.

    One torch thread by default: on a machine whose cores are shared (the embedded default runs
    the web server, the worker and this on one box) OpenMP threads spin against each other.
    Measured on 2 busy cores: 32 tokens in 6 s with one thread, 25 s with two; continuous
    batching still gets ~10 tokens/s over 4 concurrent requests. WINNOW_LOCAL_LLM_THREADS
    raises it on a machine with cores to spare."""
    return {**os.environ, **_server_env_overrides()}


def _server_env_overrides() -> dict:
    threads = os.environ.get("WINNOW_LOCAL_LLM_THREADS", "1")
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def supervised_server_command(folder: str | Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """server_command with its environment set through `env` (which execs the server, so the
    supervisor's pid is the server's), leaving the other services' environment alone."""
    return ["env", *(f"{k}={v}" for k, v in _server_env_overrides().items()), *server_command(folder, port, host)]


def bundled_model_folder(root: Path) -> Path:
    """Mirrors settings.MODELS_DIR / corpus.bundled_model.BUNDLED_MODEL_NAME without Django."""
    models = Path(os.environ.get("WINNOW_MODELS_DIR", root / "var" / "models"))
    return models / "SmolLM2-135M-Instruct"
