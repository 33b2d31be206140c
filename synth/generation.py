"""Generation jobs: validate and create them, run them (the `synth.generate` job handler),
and undo their writes when they fail or are cancelled.

Resuming: a killed attempt's writes are deleted and the method runs again from the start;
every request it made before is answered from the request cache, so the endpoint is not
called again for any of them and the output is the same (random choices are seeded).
"""

from __future__ import annotations

import time
from collections import Counter

from django.core.exceptions import ValidationError
from django.db import transaction
from pydantic import ValidationError as ConfigError

from corpus.models import Dataset, Feedback, Record, Response
from jobs.registry import JobFailed, job_handler
from jobs.runner import create_job

from .engine import Engine, EngineStats, ProviderSpec, RequestCache
from .methods import get_method, method_names
from .models import DiscardedOutput, GenerationJob, MissingAPIKey, Provider

KIND = "synth.generate"
# Failures every request to the endpoint would share: stop at the first, with its reason.
FATAL_ERRORS = {"auth": "the endpoint refused the API key", "not_found": "the endpoint or model was not found",
                "bad_request": "the endpoint rejected the request", "connection": "the endpoint is unreachable"}


def config_errors(exc: ConfigError) -> dict[str, str]:
    out = {}
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        out[f"config.{where}" if where else "config"] = error["msg"]
    return out


def validate_generation(method: str, config: dict | None) -> dict:
    """The method's config, validated and with defaults filled in; ValidationError otherwise."""
    try:
        method_cls = get_method(method)
    except LookupError:
        raise ValidationError({"method": f"unknown method {method!r}; one of {', '.join(method_names())}"}) from None
    if config is not None and not isinstance(config, dict):
        raise ValidationError({"config": "must be an object"})
    try:
        parsed = method_cls.Config.model_validate(config or {})
    except ConfigError as exc:
        raise ValidationError(config_errors(exc)) from None
    return parsed.model_dump(mode="json")


def create_generation_job(*, method: str, provider: Provider, dataset: Dataset, config: dict | None = None,
                          created_by=None, enqueue: bool = True) -> GenerationJob:
    """Validate, then create the Job and its GenerationJob in one transaction."""
    clean = validate_generation(method, config)
    if provider.api_key_env:
        try:
            provider.api_key()
        except MissingAPIKey as exc:
            raise ValidationError({"provider": str(exc)}) from None
    with transaction.atomic():
        job = create_job(KIND, params={"method": method}, subject=f"dataset:{dataset.pk}",
                         created_by=created_by, enqueue=enqueue)
        return GenerationJob.objects.create(
            job=job, method=method, provider=provider, dataset=dataset, config=clean,
            created_by=job.created_by,
        )


def undo_generation_writes(job) -> None:
    """Delete what a generation job wrote (its records, and the responses and feedback it added
    to other records). Its discards and its accounting stay: they say what happened."""
    with transaction.atomic():
        Feedback.objects.filter(provenance__job=job.pk).delete()
        Response.objects.filter(provenance__job=job.pk).delete()
        Record.objects.filter(job_id=job.pk).delete()


class GenerationRun:
    """What a method works in: the engine(s), the job's progress, log, counters and discards."""

    def __init__(self, ctx, generation: GenerationJob, spec: ProviderSpec):
        self.ctx = ctx
        self.generation = generation
        self.spec = spec
        self.provider_params = dict(generation.provider.default_params or {})
        self.counts: Counter = Counter()
        self.engines: dict[int | None, Engine] = {}
        self._stats_base = {f: getattr(generation, f) for f in (
            "calls", "retries", "failures", "prompt_tokens", "completion_tokens", "cost",
            "call_seconds", "cache_hits")}
        self._last_flush = 0.0
        self._progress = (0, None, None)
        self._model_names: dict[int | None, str] = {}

    # -- engines -----------------------------------------------------------------------------

    def engine_for(self, spec: ProviderSpec) -> Engine:
        if spec.id not in self.engines:
            cache = RequestCache(spec, self.generation.job_id)
            self.engines[spec.id] = Engine(spec, cache=cache, tick=self._tick).__enter__()
        return self.engines[spec.id]

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.flush(force=True)

    def model_name(self, spec: ProviderSpec) -> str:
        if spec.id not in self._model_names:
            provider = Provider.objects.select_related("registered_model").filter(pk=spec.id).first()
            model = provider.registered_model if provider else None
            self._model_names[spec.id] = model.name if model else spec.model
        return self._model_names[spec.id]

    def stream_requests(self, requests, engine: Engine | None = None):
        """Results as they finish. A failure every request would share (auth, model, endpoint)
        stops the job with its reason; other failures are logged as discards and yielded with
        `ok` false."""
        engine = engine or self.engine_for(self.spec)
        requests = list(requests)
        self.generation.requests_total += len(requests)
        failures, seen = 0, 0
        last_error = ""
        for result in engine.stream(requests):
            seen += 1
            if not result.ok:
                if result.error_kind in FATAL_ERRORS:
                    raise JobFailed(
                        f"{FATAL_ERRORS[result.error_kind]} ({engine.spec.name} at {engine.spec.base_url}, "
                        f"model {engine.spec.model!r}): {result.error}",
                        {"provider": engine.spec.name, "error_kind": result.error_kind},
                    )
                failures += 1
                last_error = result.error
                self.discard("request", f"failed after {result.attempts} attempt(s): {result.error}",
                             last_message=result.request.messages[-1]["content"][:2000])
            yield result
        if requests and failures == seen:
            raise JobFailed(f"every request to {engine.spec.name} failed; last error: {last_error}")
        self.flush()

    def run_requests(self, requests, engine: Engine | None = None):
        requests = list(requests)
        results = [None] * len(requests)
        index = {id(r): i for i, r in enumerate(requests)}
        for result in self.stream_requests(requests, engine):
            results[index[id(result.request)]] = result
        return results

    # -- progress and accounting -------------------------------------------------------------

    def progress(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        self._progress = (done, total, stage)
        self.ctx.progress(done, total, stage)
        self.flush()

    def _tick(self, stats: EngineStats) -> None:
        done, total, stage = self._progress
        self.ctx.progress(done, total, stage)  # also raises JobCancelled when asked to stop
        self.flush()

    def _totals(self) -> dict:
        totals = dict(self._stats_base)
        for engine in self.engines.values():
            s = engine.stats
            totals["calls"] += s.calls
            totals["retries"] += s.retries
            totals["failures"] += s.failures
            totals["prompt_tokens"] += s.prompt_tokens
            totals["completion_tokens"] += s.completion_tokens
            totals["cost"] += s.cost
            totals["call_seconds"] += s.busy_seconds
            totals["cache_hits"] += s.cache_hits
        return totals

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < 1.0:
            return
        self._last_flush = now
        totals = self._totals()
        done = sum(e.stats.requests_done for e in self.engines.values())
        GenerationJob.objects.filter(pk=self.generation.pk).update(
            requests_total=self.generation.requests_total, requests_done=done,
            records_written=self.counts["records"], responses_written=self.counts["responses"],
            feedback_written=self.counts["feedback"], discarded=self.counts["discarded"], **totals,
        )

    def discard(self, stage: str, reason: str, raw_text: str = "", *, record=None, **detail) -> None:
        DiscardedOutput.objects.create(generation=self.generation, stage=stage, reason=reason[:500],
                                       raw_text=raw_text or "", detail=detail, record=record)
        self.counts["discarded"] += 1

    def log(self, message: str, level: str = "info") -> None:
        self.ctx.log(message, level)


@job_handler(KIND, on_abandon=undo_generation_writes)
def run_generation(ctx) -> dict:
    generation = GenerationJob.objects.select_related("provider", "dataset").get(job_id=ctx.job.pk)
    # A resumed attempt starts clean and replays finished requests from the cache.
    undo_generation_writes(ctx.job)
    generation.discards.all().delete()
    generation.requests_total = 0
    method_cls = get_method(generation.method)
    try:
        config = method_cls.Config.model_validate(generation.config)
    except ConfigError as exc:
        raise JobFailed(f"invalid config: {config_errors(exc)}") from None
    try:
        spec = ProviderSpec.from_provider(generation.provider)
    except MissingAPIKey as exc:
        raise JobFailed(str(exc)) from None
    run = GenerationRun(ctx, generation, spec)
    ctx.log(f"{generation.method} with {spec.name} ({spec.model}) into dataset {generation.dataset.name!r}")
    try:
        result = method_cls(run, config).run() or {}
    finally:
        run.close()
    generation.refresh_from_db()
    summary = {
        "records": run.counts["records"], "responses": run.counts["responses"],
        "feedback": run.counts["feedback"], "discarded": run.counts["discarded"],
        "calls": generation.calls, "cache_hits": generation.cache_hits,
        "prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
        "cost": generation.cost, **result,
    }
    ctx.log(f"done: {summary['records']} records, {summary['responses']} responses, "
            f"{summary['feedback']} feedback, {summary['discarded']} discarded; "
            f"{generation.calls} calls, {generation.cache_hits} from cache")
    return summary
