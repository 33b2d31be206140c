"""Local OpenAI-compatible servers for registered models, and provider health checks.

`transformers serve --continuous-batching --device cpu FOLDER` serves a Hugging Face folder
on loopback (HF_HUB_OFFLINE=1: nothing is fetched; the model name in requests is the folder
path). `winnow run` starts one for the bundled model as a supervised service, and
`ensure_local_provider` points the "local" Provider at it. Any full-format RegisteredModel
(e.g. one a training run produced) can be served the same way with `start_model_server`,
which also creates its Provider, so it can generate the next round of data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from django.conf import settings

from .localserver import server_command, server_env
from .models import ModelServer, Provider

LOCAL_PROVIDER_NAME = "local"


def base_url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}/v1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_provider_for_model(model, *, base_url: str, name: str | None = None) -> Provider:
    """The Provider row for a locally served RegisteredModel (created or repointed)."""
    provider, _ = Provider.objects.update_or_create(
        name=name or f"model-{model.pk}",
        defaults={
            "base_url": base_url, "model": str(model.path), "api_key_env": "",
            "registered_model": model, "max_concurrency": settings.WINNOW_LOCAL_LLM_CONCURRENCY,
            "timeout_seconds": settings.WINNOW_LOCAL_LLM_TIMEOUT,
        },
    )
    return provider


def ensure_local_provider(port: int | None = None, host: str | None = None) -> Provider:
    """The default provider: the bundled model served by `winnow run`."""
    from corpus.bundled_model import register_bundled_model

    host = host or settings.WINNOW_LOCAL_LLM_HOST
    port = port or settings.WINNOW_LOCAL_LLM_PORT
    return ensure_provider_for_model(register_bundled_model(), base_url=base_url_for(host, port),
                                     name=LOCAL_PROVIDER_NAME)


def wait_until_serving(base_url: str, timeout: float = 180, proc: subprocess.Popen | None = None) -> None:
    """Wait for `transformers serve`'s /health (it answers once the model is loaded)."""
    health = base_url.rstrip("/").removesuffix("/v1") + "/health"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the model server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"no model server at {health} after {timeout:.0f} s ({last})")


def start_model_server(model, *, port: int | None = None, host: str = "127.0.0.1",
                       wait: bool = False) -> ModelServer:
    """Serve a full-format RegisteredModel on loopback in a process of its own, and create
    its Provider. The server outlives the caller (a web request, the CLI)."""
    from corpus.models import RegisteredModel

    if model.format != RegisteredModel.Format.FULL:
        raise ValueError(f"model {model.name!r} is a {model.format}; only full-format models can be served: "
                         'train with "merge_adapter": true in the run config and serve the merged model '
                         "it registers beside the adapter")
    folder = Path(model.path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"model {model.name!r}: {folder} is not a Hugging Face model folder (no config.json)")
    port = port or free_port(host)
    logs = settings.DATA_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"model-server-{model.pk}-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(server_command(folder, port, host), env=server_env(), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    provider = ensure_provider_for_model(model, base_url=base_url_for(host, port))
    ModelServer.objects.filter(provider=provider).delete()
    server = ModelServer.objects.create(registered_model=model, provider=provider, host=host, port=port,
                                        pid=proc.pid, log_path=str(log_path))
    if wait:
        wait_until_serving(provider.base_url, proc=proc)
    return server


def server_alive(server: ModelServer) -> bool:
    if not server.pid:
        return False
    try:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        state = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return b"serve" in cmdline and state not in ("Z", "X")  # a zombie has exited


def stop_model_server(server: ModelServer, grace: float = 10.0) -> None:
    """SIGTERM its process group, SIGKILL it if it is still there after `grace` seconds."""
    if server_alive(server):
        try:
            os.killpg(server.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while server_alive(server) and time.monotonic() < deadline:
                time.sleep(0.2)
            if server_alive(server):
                os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.delete()


def try_provider(provider: Provider, prompt: str = "Say hello in one short sentence.",
                 *, max_tokens: int = 16, timeout: float | None = None) -> dict:
    """One small chat completion: what the admin's "try it" and the health check do.

    Works against any OpenAI-compatible endpoint (GET /v1/models is not universal: it fails
    offline on `transformers serve`). Returns {"ok", "latency_s", "text" | "error", "usage"}.
    """
    started = time.monotonic()
    try:
        import openai

        client = openai.OpenAI(base_url=provider.base_url, api_key=provider.api_key(), max_retries=0,
                               timeout=timeout or min(provider.timeout_seconds, 120))
        reply = client.chat.completions.create(
            model=provider.model, messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens, temperature=0,
        )
        text = reply.choices[0].message.content or ""
        usage = reply.usage.model_dump() if reply.usage else {}
        return {"ok": True, "latency_s": round(time.monotonic() - started, 3), "text": text, "usage": usage}
    except Exception as exc:  # reported, not raised: this is a diagnosis
        from .engine import classify_error, redact

        kind, _, _, message = classify_error(exc)
        try:
            message = redact(message, provider.api_key())
        except Exception:  # no key set: nothing to redact
            pass
        return {"ok": False, "latency_s": round(time.monotonic() - started, 3), "error": message,
                "error_kind": kind}


def check_health(provider: Provider) -> dict:
    return try_provider(provider, prompt="ping", max_tokens=1, timeout=min(provider.timeout_seconds, 60))
