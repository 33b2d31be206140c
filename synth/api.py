"""REST views for synth: providers (CRUD, health, try it, serve a registered model),
generation jobs (create -> 202, list, detail with progress/tokens/cost, cancel, discards) and
the catalogue of methods with their config schemas. Managers and admins only."""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import ProtectedError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from corpus.models import Dataset, RegisteredModel
from jobs.runner import request_cancel
from winnow.api import id_param
from winnow.roles import IsManager

from .generation import create_generation_job
from .methods import get_method, method_names
from .models import DiscardedOutput, GenerationJob, ModelServer, Provider, validate_sampling_params
from .serving import check_health, server_alive, start_model_server, stop_model_server, try_provider

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def _require_object(data) -> None:
    """These actions read named fields: a JSON array or scalar body is a 400, not a crash."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": "the body must be a JSON object"})


class ProviderSerializer(serializers.ModelSerializer):
    api_key_set = serializers.SerializerMethodField(help_text="Whether the named environment variable is set")
    server = serializers.SerializerMethodField(help_text="The local server Winnow runs for it, if any")

    class Meta:
        model = Provider
        fields = [
            "id", "name", "base_url", "model", "api_key_env", "api_key_set", "default_params",
            "max_concurrency", "requests_per_minute", "tokens_per_minute", "price_prompt_per_1k",
            "price_completion_per_1k", "supports_json_mode", "timeout_seconds", "max_retries",
            "registered_model", "server", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "registered_model", "server", "created_at", "updated_at"]
        extra_kwargs = {"max_concurrency": {"min_value": 1, "max_value": 10_000},
                        "max_retries": {"max_value": 50},
                        "timeout_seconds": {"min_value": 0.1, "max_value": 3600},
                        "price_prompt_per_1k": {"min_value": 0}, "price_completion_per_1k": {"min_value": 0}}

    def get_api_key_set(self, provider) -> bool:
        import os

        return not provider.api_key_env or bool(os.environ.get(provider.api_key_env))

    def get_server(self, provider) -> dict | None:
        server = ModelServer.objects.filter(provider=provider).first()
        if server is None:
            return None
        return {"host": server.host, "port": server.port, "pid": server.pid, "alive": server_alive(server),
                "log": server.log_path}

    def validate_api_key_env(self, value):
        if value and not ENV_NAME.match(value):
            raise serializers.ValidationError(
                "must be the NAME of an environment variable (letters, digits, _), never the key itself")
        if value.lower().startswith(("sk-", "sk_")):
            raise serializers.ValidationError("looks like an API key; give the name of the variable that holds it")
        return value

    def validate_default_params(self, value):
        from django.core.exceptions import ValidationError

        try:
            return validate_sampling_params(value, "default_params")
        except ValidationError as exc:
            raise serializers.ValidationError([f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()]) from None


@extend_schema_field(OpenApiTypes.STR)
class ProviderSelector(serializers.Field):
    """A provider by id or by name."""

    def to_internal_value(self, value):
        provider = None
        if isinstance(value, int) and not isinstance(value, bool):
            provider = Provider.objects.filter(pk=value).first()
        elif isinstance(value, str) and value:
            provider = Provider.objects.filter(name=value).first()
            if provider is None and value.isascii() and value.isdigit() and len(value) < 19:
                provider = Provider.objects.filter(pk=int(value)).first()
        else:
            raise serializers.ValidationError("give a provider id or name")
        if provider is None:
            raise serializers.ValidationError(f"unknown provider {value!r}")
        return provider

    def to_representation(self, value):
        return value.name


class GenerationJobSerializer(serializers.ModelSerializer):
    job = serializers.IntegerField(source="job_id", read_only=True)
    provider = serializers.CharField(source="provider.name", read_only=True)
    status = serializers.CharField(source="job.status", read_only=True)
    progress = serializers.SerializerMethodField()
    tokens_per_second = serializers.FloatField(read_only=True)
    error = serializers.CharField(source="job.error", read_only=True)
    result = serializers.JSONField(source="job.result", read_only=True)
    started_at = serializers.DateTimeField(source="job.started_at", read_only=True)
    finished_at = serializers.DateTimeField(source="job.finished_at", read_only=True)
    cancel_requested = serializers.BooleanField(source="job.cancel_requested", read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id", "job", "method", "provider", "dataset", "config", "status", "progress",
            "requests_total", "requests_done", "cache_hits", "calls", "retries", "failures",
            "prompt_tokens", "completion_tokens", "tokens_per_second", "cost", "records_written",
            "responses_written", "feedback_written", "discarded", "error", "result",
            "cancel_requested", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, generation) -> dict:
        job = generation.job
        return {"done": job.progress_done, "total": job.progress_total,
                "fraction": job.progress_fraction, "stage": job.progress_stage}


class GenerationJobCreateSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=[])
    provider = ProviderSelector(required=False, help_text='Provider id or name (default: "local")')
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(),
                                                 help_text="Where output goes (and input comes from)")
    config = serializers.JSONField(required=False, default=dict, help_text="The method's config (see generation-methods)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["method"].choices = method_names()

    def validate(self, attrs):
        if "provider" not in attrs:
            provider = Provider.objects.filter(name="local").first()
            if provider is None:
                raise serializers.ValidationError({"provider": "no provider given and no \"local\" provider exists"})
            attrs["provider"] = provider
        return attrs


class DiscardSerializer(serializers.ModelSerializer):
    class Meta:
        model = DiscardedOutput
        fields = ["id", "stage", "reason", "raw_text", "detail", "record", "created_at"]


class ProviderViewSet(viewsets.ModelViewSet):
    """OpenAI-compatible endpoints Winnow generates with. The API key is never stored: a
    provider names the environment variable that holds it."""

    serializer_class = ProviderSerializer
    permission_classes = [IsManager]
    queryset = Provider.objects.all()

    def perform_destroy(self, provider):
        try:
            with transaction.atomic():
                server = ModelServer.objects.filter(provider=provider).first()
                provider.delete()
        except ProtectedError:
            raise exceptions.ValidationError(
                {"provider": "generation jobs used this provider; it stays for their provenance"}) from None
        if server is not None:
            stop_model_server(server)

    @extend_schema(request=None, responses=inline_serializer("ProviderHealth", {
        "ok": serializers.BooleanField(), "latency_s": serializers.FloatField(),
        "text": serializers.CharField(required=False), "error": serializers.CharField(required=False)}))
    @action(detail=True, methods=["post", "get"])
    def health(self, request, pk=None):
        """A one-token chat completion against the endpoint (works on every OpenAI-compatible
        server; GET /v1/models does not, e.g. on `transformers serve` offline)."""
        return Response(check_health(self.get_object()))

    @extend_schema(request=inline_serializer("TryProvider", {
        "prompt": serializers.CharField(), "max_tokens": serializers.IntegerField(required=False)}),
        responses=inline_serializer("TryProviderReply", {"ok": serializers.BooleanField(),
                                                          "text": serializers.CharField()}))
    @action(detail=True, methods=["post"], url_path="try")
    def try_it(self, request, pk=None):
        """Send one prompt and see the reply."""
        _require_object(request.data)
        prompt = request.data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise exceptions.ValidationError({"prompt": "give a non-empty prompt"})
        max_tokens = request.data.get("max_tokens", 64)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 4096:
            raise exceptions.ValidationError({"max_tokens": "must be an integer between 1 and 4096"})
        return Response(try_provider(self.get_object(), prompt, max_tokens=max_tokens))

    @extend_schema(request=inline_serializer("ServeModel", {
        "model": serializers.CharField(help_text="RegisteredModel id or name"),
        "port": serializers.IntegerField(required=False)}), responses={201: ProviderSerializer})
    @action(detail=False, methods=["post"], url_path="serve-model")
    def serve_model(self, request):
        """Start a local OpenAI-compatible server for a full-format registered model (e.g. one a
        training run produced) and create its provider. The server loads in the background:
        poll the provider's health."""
        _require_object(request.data)
        ref = request.data.get("model")
        model = None
        if isinstance(ref, int) and not isinstance(ref, bool):
            model = RegisteredModel.objects.filter(pk=ref).first()
        elif isinstance(ref, str) and ref:
            model = RegisteredModel.objects.filter(name=ref).first()
        if model is None:
            raise exceptions.ValidationError({"model": f"unknown registered model {ref!r}"})
        port = request.data.get("port")
        if port is not None and (not isinstance(port, int) or not 1024 <= port <= 65535):
            raise exceptions.ValidationError({"port": "must be an integer between 1024 and 65535"})
        try:
            server = start_model_server(model, port=port)
        except ValueError as exc:
            raise exceptions.ValidationError({"model": str(exc)}) from None
        data = ProviderSerializer(server.provider).data
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/providers/{server.provider.pk}"})


class GenerationJobViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                           viewsets.GenericViewSet):
    """Generation jobs: run a method (self_instruct, responses, judge, ...) with a provider into a
    dataset. Create answers 202 with the job; follow its progress, tokens and cost here."""

    permission_classes = [IsManager]

    def get_queryset(self):
        jobs = GenerationJob.objects.select_related("job", "provider")
        params = self.request.query_params
        if params.get("method"):
            jobs = jobs.filter(method=params["method"])
        if (dataset := id_param(params, "dataset")) is not None:
            jobs = jobs.filter(dataset_id=dataset)
        if params.get("status"):
            jobs = jobs.filter(job__status=params["status"])
        return jobs

    def get_serializer_class(self):
        return GenerationJobCreateSerializer if self.action == "create" else GenerationJobSerializer

    @extend_schema(request=GenerationJobCreateSerializer, responses={202: GenerationJobSerializer})
    def create(self, request, *args, **kwargs):
        form = GenerationJobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        generation = create_generation_job(method=data["method"], provider=data["provider"],
                                           dataset=data["dataset"], config=data.get("config") or {},
                                           created_by=request.user)
        return Response(GenerationJobSerializer(generation).data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/v1/generation-jobs/{generation.pk}"})

    @extend_schema(request=None, responses=GenerationJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop the job: at once when queued, at its next step when running (its partial output
        is removed; the request cache keeps the replies, so a rerun costs nothing for them)."""
        generation = self.get_object()
        request_cancel(generation.job)
        generation.refresh_from_db()
        generation.job.refresh_from_db()
        return Response(GenerationJobSerializer(generation).data)

    @extend_schema(responses=DiscardSerializer(many=True))
    @action(detail=True, methods=["get"])
    def discards(self, request, pk=None):
        """What the job did not keep, with the reason and the raw reply."""
        generation = self.get_object()
        rows = generation.discards.all()
        if request.query_params.get("stage"):
            rows = rows.filter(stage=request.query_params["stage"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(DiscardSerializer(page, many=True).data)


class GenerationMethodList(APIView):
    """The generation methods and the JSON schema of each one's config."""

    permission_classes = [IsManager]

    @extend_schema(responses=inline_serializer("GenerationMethod", {
        "name": serializers.CharField(), "title": serializers.CharField(),
        "template_version": serializers.CharField(), "config_schema": serializers.JSONField()}, many=True))
    def get(self, request):
        out = []
        for name in method_names():
            cls = get_method(name)
            out.append({"name": name, "title": cls.title, "template_version": cls.template_version,
                        "default_params": cls.default_params,
                        "config_schema": cls.Config.model_json_schema()})
        return Response(out)
