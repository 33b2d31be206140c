"""What every generation method shares: a typed config, a registry, and the run it works in.

A method is one class:

    @register_method
    class MyMethod(GenerationMethod):
        name = "my_method"
        title = "My method"
        template_version = "1"
        class Config(MethodConfig):
            n: int = 3
        def run(self) -> dict:
            results = self.run_requests([...])          # through the engine, cached
            self.write_record(prompt=..., parent=None)  # provenance filled in
            return {"records": 1}
"""

from __future__ import annotations

import random
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corpus.models import AuthorKind, Feedback, Record, Response

from ..engine import CompletionRequest, CompletionResult

_METHODS: dict[str, type[GenerationMethod]] = {}


def register_method(cls: type[GenerationMethod]) -> type[GenerationMethod]:
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise RuntimeError(f"generation method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[GenerationMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise LookupError(
            f"unknown method {name!r}; one of {', '.join(sorted(_METHODS))}"
        ) from None


def method_names() -> list[str]:
    return sorted(_METHODS)


class MethodConfig(BaseModel):
    """Settings every method has. Unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    params: dict = Field(default_factory=dict, description="Sampling parameters over the provider's defaults")
    seed: int = Field(0, description="Seeds every random choice, so a rerun sends the same requests")

    @field_validator("params")
    @classmethod
    def _known_params(cls, value):
        from django.core.exceptions import ValidationError

        from ..models import validate_sampling_params

        try:
            return validate_sampling_params(value, "params")
        except ValidationError as exc:
            raise ValueError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None


class RecordInputConfig(MethodConfig):
    """For methods that read records: which ones (default: every kept record of the job's
    dataset that this method did not write itself)."""

    source_dataset: int | None = Field(None, description="Read records from this dataset id instead")
    record_source: str | None = Field(None, description="Only records whose `source` is this")
    record_ids: list[int] | None = None
    limit: int | None = Field(None, ge=1)


class GenerationMethod:
    name: ClassVar[str]
    title: ClassVar[str]
    template_version: ClassVar[str] = "1"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # Default sampling parameters of the method (under the provider's, over nothing).
    default_params: ClassVar[dict] = {}

    def __init__(self, run, config: MethodConfig):
        self.run_ctx = run  # synth.generation.GenerationRun
        self.config = config
        self.rng = random.Random(config.seed)

    # -- what methods call -------------------------------------------------------------------

    @property
    def generation(self):
        return self.run_ctx.generation

    def params(self, **overrides) -> dict:
        """Sampling parameters: method defaults < provider defaults < job config < overrides."""
        return {**self.default_params, **self.run_ctx.provider_params, **self.config.params, **overrides}

    def request(self, messages: list[dict], *, sample_index: int = 0, json_mode: bool = False,
                tag=None, **param_overrides) -> CompletionRequest:
        return CompletionRequest(messages=messages, params=self.params(**param_overrides),
                                 sample_index=sample_index, json_mode=json_mode, tag=tag)

    def stream_requests(self, requests: list[CompletionRequest], engine=None):
        """Like run_requests, in completion order (write output as it arrives)."""
        return self.run_ctx.stream_requests(requests, engine=engine)

    def run_requests(self, requests: list[CompletionRequest], engine=None) -> list[CompletionResult]:
        """Results in request order; failed requests are logged as discards and come back with
        `ok` false. Failures every request would share (auth, model, endpoint) stop the job."""
        return self.run_ctx.run_requests(requests, engine=engine)

    def input_records(self):
        config = self.config
        dataset_id = getattr(config, "source_dataset", None) or self.generation.dataset_id
        records = Record.objects.filter(dataset_id=dataset_id, status="kept").exclude(
            job_id=self.generation.job_id
        )
        if getattr(config, "record_source", None):
            records = records.filter(source=config.record_source)
        if getattr(config, "record_ids", None):
            records = records.filter(pk__in=config.record_ids)
        records = records.order_by("id")
        if getattr(config, "limit", None):
            records = records[: config.limit]
        return list(records)

    def provenance(self, *, parent: Record | None = None, params: dict | None = None,
                   provider=None, **extra) -> dict:
        spec = provider or self.run_ctx.spec
        return {
            "method": self.name,
            "provider": spec.id,
            "provider_name": spec.name,
            "model": spec.model,
            "params": params if params is not None else self.params(),
            "template_version": f"{self.name}/{self.template_version}",
            "job": self.generation.job_id,
            "parent_record": parent.pk if parent is not None else None,
            **extra,
        }

    def write_record(self, *, prompt: str, context: str = "", parent: Record | None = None,
                     metadata: dict | None = None, params: dict | None = None, **provenance) -> Record:
        record = Record.objects.create(
            dataset_id=self.generation.dataset_id, kind=Record.Kind.INSTRUCTION, prompt=prompt,
            context=context, metadata=metadata or {}, source=f"synth:{self.name}",
            provenance=self.provenance(parent=parent, params=params, **provenance),
            job_id=self.generation.job_id,
        )
        self.run_ctx.counts["records"] += 1
        return record

    def write_response(self, record: Record, text: str, *, params: dict, provider=None,
                       **provenance) -> Response:
        spec = provider or self.run_ctx.spec
        response = Response.objects.create(
            record=record, text=text, author_kind=AuthorKind.MODEL,
            model_name=self.run_ctx.model_name(spec), generation_params=params,
            provenance=self.provenance(parent=record, params=params, provider=spec, **provenance),
        )
        self.run_ctx.counts["responses"] += 1
        return response

    def write_feedback(self, record: Record, kind: str, payload: dict, **provenance) -> Feedback:
        from corpus.feedback import validate_payload

        response_ids = set(record.responses.values_list("pk", flat=True))
        feedback = Feedback.objects.create(
            record=record, kind=kind, payload=validate_payload(kind, payload, response_ids),
            author_kind=AuthorKind.MODEL, model_name=self.run_ctx.model_name(self.run_ctx.spec),
            provenance={"method": "llm_judge", "provider": self.run_ctx.spec.id,
                        "job": self.generation.job_id, "template_version": f"{self.name}/{self.template_version}",
                        **provenance},
        )
        self.run_ctx.counts["feedback"] += 1
        return feedback

    def discard(self, stage: str, reason: str, raw_text: str = "", *, record: Record | None = None,
                **detail) -> None:
        self.run_ctx.discard(stage, reason, raw_text, record=record, **detail)

    def progress(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        self.run_ctx.progress(done, total, stage)

    def log(self, message: str, level: str = "info") -> None:
        self.run_ctx.log(message, level)

    # -- what methods implement --------------------------------------------------------------

    def run(self) -> dict:
        raise NotImplementedError
