"""N candidate responses per prompt, across temperatures and/or providers: the raw material
for preference data (rate them, then chosen = best, rejected = worst)."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..engine import CompletionRequest, ProviderSpec
from .base import GenerationMethod, RecordInputConfig, register_method


class ResponsesConfig(RecordInputConfig):
    samples_per_temperature: int = Field(2, ge=1, le=64, description="Responses per prompt per temperature and provider")
    temperatures: list[float] = Field(default_factory=lambda: [0.7])
    extra_providers: list[str] = Field(default_factory=list, description="Also ask these providers (by name)")
    system_prompt: str | None = Field(None, description="Prepended as a system message when the record has none")

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value):
        if not value:
            raise ValueError("give at least one temperature")
        for t in value:
            if not 0 <= t <= 2:
                raise ValueError(f"temperature {t} is outside 0-2")
        return value


@register_method
class Responses(GenerationMethod):
    name = "responses"
    title = "Responses: N candidates per prompt"
    template_version = "1"
    Config = ResponsesConfig
    default_params = {"max_tokens": 256}

    def providers(self) -> list[ProviderSpec]:
        from jobs.registry import JobFailed

        from ..models import MissingAPIKey, Provider

        specs = [self.run_ctx.spec]
        for name in self.config.extra_providers:
            provider = Provider.objects.filter(name=name).first()
            if provider is None:
                raise JobFailed(f"unknown provider {name!r} in extra_providers")
            try:
                specs.append(ProviderSpec.from_provider(provider))
            except MissingAPIKey as exc:
                raise JobFailed(str(exc)) from None
        return specs

    def messages(self, record) -> list[dict]:
        messages = record.as_messages()
        if self.config.system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": self.config.system_prompt}, *messages]
        return messages

    def run(self) -> dict:
        records = self.input_records()
        specs = self.providers()
        per_record = len(specs) * len(self.config.temperatures) * self.config.samples_per_temperature
        total = len(records) * per_record
        self.progress(0, total, "responses")
        written = 0
        for spec in specs:
            engine = self.run_ctx.engine_for(spec)
            params_base = {**self.default_params, **self._provider_params(spec), **self.config.params}
            requests = []
            for record in records:
                messages = self.messages(record)
                for temperature in self.config.temperatures:
                    for sample in range(self.config.samples_per_temperature):
                        params = {**params_base, "temperature": temperature}
                        requests.append(CompletionRequest(messages=messages, params=params,
                                                          sample_index=sample, tag=record))
            for result in self.stream_requests(requests, engine=engine):
                if not result.ok:
                    continue
                if not result.text.strip():
                    self.discard("response", "empty reply", result.text, record=result.request.tag)
                    continue
                self.write_response(result.request.tag, result.text.strip(), params=result.request.params,
                                    provider=spec, sample_index=result.request.sample_index,
                                    finish_reason=result.finish_reason, cached=result.cached)
                written += 1
                self.progress(written, total, "responses")
        return {"prompts": len(records)}

    def _provider_params(self, spec: ProviderSpec) -> dict:
        if spec.id == self.run_ctx.spec.id:
            return self.run_ctx.provider_params
        from ..models import Provider

        return dict(Provider.objects.get(pk=spec.id).default_params or {})
