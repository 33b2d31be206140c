"""Synth's state: providers (OpenAI-compatible endpoints), local model servers, generation
jobs with their accounting, the request cache, and what a method discarded (with why).

API keys never sit here: a Provider names the environment variable that holds its key.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

SAMPLING_PARAMS = {
    # name: (type, min, max) — what a Provider's defaults and a job's params may hold
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.0, 1.0),
    "max_tokens": (int, 1, 32_768),
    "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
    "seed": (int, 0, 2**31 - 1),
    "stop": (list, None, None),
}


def validate_sampling_params(params, field: str = "params") -> dict:
    """Known OpenAI sampling parameters with values in range, or a ValidationError."""
    if not isinstance(params, dict):
        raise ValidationError({field: "must be an object of sampling parameters"})
    clean = {}
    for name, value in params.items():
        if name not in SAMPLING_PARAMS:
            raise ValidationError(
                {f"{field}.{name}": f"unknown sampling parameter; allowed: {', '.join(SAMPLING_PARAMS)}"}
            )
        kind, lo, hi = SAMPLING_PARAMS[name]
        if kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise ValidationError({f"{field}.{name}": "must be a string or a list of strings"})
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is int:
                ok = ok and float(value).is_integer()
            if not ok:
                raise ValidationError({f"{field}.{name}": f"must be a{'n integer' if kind is int else ' number'}"})
            value = kind(value)
            if not lo <= value <= hi:
                raise ValidationError({f"{field}.{name}": f"must be between {lo} and {hi}, got {value}"})
        clean[name] = value
    return clean


class Provider(models.Model):
    """An OpenAI-compatible endpoint and how hard Winnow may use it."""

    name = models.SlugField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500, help_text="e.g. https://api.openai.com/v1")
    model = models.CharField(max_length=500, help_text="The model name sent in requests")
    api_key_env = models.CharField(
        max_length=100, blank=True, default="",
        help_text="Name of the environment variable holding the API key (never the key itself). "
        "Empty: the endpoint needs no key.",
    )
    default_params = models.JSONField(default=dict, blank=True, help_text="Sampling defaults")
    max_concurrency = models.PositiveIntegerField(default=8, help_text="Requests in flight at most")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit")
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit")
    price_prompt_per_1k = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    price_completion_per_1k = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    supports_json_mode = models.BooleanField(
        default=False, help_text='Send response_format={"type": "json_object"} for structured steps'
    )
    timeout_seconds = models.FloatField(default=120)
    max_retries = models.PositiveIntegerField(default=6)
    registered_model = models.ForeignKey(
        "corpus.RegisteredModel", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="providers", help_text="Set when Winnow serves this model locally",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        self.default_params = validate_sampling_params(self.default_params, "default_params")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValidationError({"api_key_env": "must be an environment variable name, not a key"})

    def api_key(self) -> str:
        """The key from the environment. Local servers take any key; the client needs one."""
        if not self.api_key_env:
            return "no-key"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise MissingAPIKey(
                f"provider {self.name!r}: environment variable {self.api_key_env} is not set"
            )
        return key

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * float(self.price_prompt_per_1k)
            + completion_tokens * float(self.price_completion_per_1k)
        ) / 1000.0


class MissingAPIKey(RuntimeError):
    pass


class ModelServer(models.Model):
    """A local OpenAI-compatible server (`transformers serve`) Winnow started for a model."""

    registered_model = models.ForeignKey(
        "corpus.RegisteredModel", on_delete=models.CASCADE, related_name="servers"
    )
    provider = models.OneToOneField(Provider, on_delete=models.CASCADE, related_name="server")
    host = models.CharField(max_length=100, default="127.0.0.1")
    port = models.PositiveIntegerField()
    pid = models.PositiveIntegerField(null=True, blank=True)
    log_path = models.CharField(max_length=1000, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.registered_model} on {self.host}:{self.port}"


class GenerationJob(models.Model):
    """One run of a generation method: what it was asked, and its accounting.

    The generic Job row (jobs.Job) holds status, progress, log and cancel; this row holds what
    is generation-specific and is what `/api/v1/generation-jobs` shows.
    """

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="generation")
    method = models.CharField(max_length=64)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="generation_jobs")
    dataset = models.ForeignKey(
        "corpus.Dataset", on_delete=models.CASCADE, related_name="generation_jobs",
        help_text="Where the output goes (and, for methods that read records, where they come from)",
    )
    config = models.JSONField(default=dict, blank=True)
    requests_total = models.PositiveIntegerField(default=0)
    requests_done = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="HTTP attempts made, retries included")
    retries = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.FloatField(default=0)
    call_seconds = models.FloatField(default=0, help_text="Wall time spent with requests in flight")
    records_written = models.PositiveIntegerField(default=0)
    responses_written = models.PositiveIntegerField(default=0)
    feedback_written = models.PositiveIntegerField(default=0)
    discarded = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} #{self.pk}"

    @property
    def tokens_per_second(self) -> float | None:
        if not self.call_seconds:
            return None
        return round(self.completion_tokens / self.call_seconds, 2)


class CachedCompletion(models.Model):
    """A finished request, keyed by sha256(provider, model, messages, params, sample index).

    A resumed job or a rerun with the same settings reads its replies here instead of calling
    the endpoint again. Only successful replies are stored: a failure is retried next time.
    """

    key = models.CharField(max_length=64, unique=True)
    provider = models.ForeignKey(Provider, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=500)
    request = models.JSONField()
    text = models.TextField()
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)


class DiscardedOutput(models.Model):
    """Output a method did not keep: unparseable replies (raw text kept), filtered candidates,
    eliminated evolutions, failed requests. Nothing a model said is lost silently."""

    generation = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="discards")
    stage = models.CharField(max_length=64)
    reason = models.CharField(max_length=500)
    raw_text = models.TextField(blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    record = models.ForeignKey(
        "corpus.Record", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["generation", "stage"], name="discard_generation_stage")]
