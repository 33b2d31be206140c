"""REST views for the model registry and training runs (thin: behaviour is in services)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from corpus.models import RegisteredModel, Snapshot
from jobs.api import JobSerializer
from jobs.models import Job, JobLogEntry
from winnow.api import id_param
from winnow.roles import IsManager

from .config import ConfigError, check_model_folder
from .models import TrainingCheckpoint, TrainingMetric, TrainingRun
from .services import RunStateError, cancel_run, resume_run, start_run

LOG_TAIL_BYTES = 20_000
METRICS_LIMIT = 5000


def _config_error(exc: ConfigError) -> serializers.ValidationError:
    return serializers.ValidationError(exc.errors)


# -- models ----------------------------------------------------------------------------------


class RegisteredModelSerializer(serializers.ModelSerializer):
    base = serializers.PrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True)
    training_run = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["id", "name", "origin", "format", "path", "base", "metadata", "training_run",
                  "created_at"]
        read_only_fields = ["id", "origin", "training_run", "created_at"]

    def get_training_run(self, model) -> int | None:
        return (model.metadata or {}).get("training_run")

    def validate_path(self, value: str) -> str:
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise serializers.ValidationError("must be an absolute path to a local folder")
        problem = check_model_folder(str(path))
        if problem:
            raise serializers.ValidationError(problem)
        return str(path.resolve())

    def validate(self, attrs):
        path = Path(attrs["path"])
        is_adapter = (path / "adapter_config.json").is_file()
        fmt = attrs.get("format") or (RegisteredModel.Format.ADAPTER if is_adapter
                                      else RegisteredModel.Format.FULL)
        attrs["format"] = fmt
        if fmt == RegisteredModel.Format.ADAPTER:
            if not is_adapter:
                raise serializers.ValidationError({"format": "the folder holds no adapter_config.json"})
            if attrs.get("base") is None:
                raise serializers.ValidationError({"base": "an adapter needs its base model"})
        elif not (path / "config.json").is_file():
            raise serializers.ValidationError({"path": "a full model folder needs a config.json"})
        return attrs

    def create(self, validated):
        validated["origin"] = RegisteredModel.Origin.LOCAL
        return super().create(validated)


class RegisteredModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             mixins.CreateModelMixin, viewsets.GenericViewSet):
    """The model registry: the bundled SmolLM2, local folders users register, and every model a
    training run produced. Nothing is loaded from a hub: a path is a local folder."""

    permission_classes = [IsManager]
    serializer_class = RegisteredModelSerializer

    def get_queryset(self):
        models = RegisteredModel.objects.all()
        params = self.request.query_params
        for name in ("origin", "format"):
            if params.get(name):
                models = models.filter(**{name: params[name]})
        return models

    def list(self, request, *args, **kwargs):
        from corpus.bundled_model import is_prepared, register_bundled_model

        if is_prepared():
            register_bundled_model()  # the registry always lists the bundled model
        return super().list(request, *args, **kwargs)


# -- training runs ---------------------------------------------------------------------------


class MetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingMetric
        fields = ["id", "split", "step", "epoch", "loss", "learning_rate", "grad_norm",
                  "tokens_per_second", "values", "at"]


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingCheckpoint
        fields = ["step", "path", "created_at"]


class TrainingRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    base_model = serializers.PrimaryKeyRelatedField(read_only=True)
    snapshot = serializers.PrimaryKeyRelatedField(read_only=True)
    latest_metrics = serializers.SerializerMethodField()
    checkpoints = CheckpointSerializer(many=True, read_only=True)
    job = JobSerializer(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "name", "method", "mode", "base_model", "snapshot", "reward_model", "config",
            "status", "stage", "progress", "error", "evaluation", "win_rate", "artifact",
            "merged_model", "latest_metrics", "checkpoints", "job", "created_at", "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run) -> dict:
        total = run.total_steps
        return {"done": run.step, "total": total,
                "fraction": min(1.0, run.step / total) if total else None, "stage": run.stage}

    def get_latest_metrics(self, run) -> list[dict]:
        rows = list(run.metrics.order_by("-id")[:20])
        return MetricSerializer(reversed(rows), many=True).data


class TrainingRunListSerializer(TrainingRunSerializer):
    class Meta(TrainingRunSerializer.Meta):
        fields = ["id", "name", "method", "mode", "base_model", "snapshot", "status", "stage",
                  "progress", "win_rate", "artifact", "created_at", "finished_at"]
        read_only_fields = fields


class StartRunSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=TrainingRun.Method.choices)
    mode = serializers.ChoiceField(choices=TrainingRun.Mode.choices, default=TrainingRun.Mode.LORA)
    base_model = serializers.PrimaryKeyRelatedField(queryset=RegisteredModel.objects.all())
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    reward_model = serializers.PrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True,
        help_text="RLHF only: the full-format model a reward run registered")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    config = serializers.DictField(
        required=False, default=dict,
        help_text="Hyper-parameters over the method's defaults (see docs/training.md): epochs, "
        "max_steps, learning_rate, batch_size, grad_accumulation, max_length, warmup_ratio, "
        "warmup_steps, scheduler, seed, lora_r, lora_alpha, lora_dropout, lora_target_modules, "
        "freeze_first_layers, trainable_modules, layerwise_lr_decay, gradual_unfreezing, ...")


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         viewsets.GenericViewSet):
    """Training runs: POST starts one (201, with the job that runs it on the training queue); GET
    shows status, progress, metrics, checkpoints and evaluation."""

    permission_classes = [IsManager]

    def get_serializer_class(self):
        if self.action == "create":
            return StartRunSerializer
        return TrainingRunListSerializer if self.action == "list" else TrainingRunSerializer

    def get_queryset(self):
        runs = TrainingRun.objects.select_related("job")
        params = self.request.query_params
        status_ = params.get("status")
        if status_ and status_ not in TrainingRun.Status.values:
            raise serializers.ValidationError(
                {"status": f"must be one of {', '.join(TrainingRun.Status.values)}"})
        for name in ("status", "method", "snapshot", "base_model"):
            if params.get(name):
                runs = runs.filter(**{name: params[name]})
        return runs

    @extend_schema(request=StartRunSerializer, responses={201: TrainingRunSerializer})
    def create(self, request):
        """Validate everything up front (400 naming the field, nothing written), then queue the
        run on the training queue."""
        data = StartRunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            run = start_run(
                method=values["method"], mode=values["mode"], base_model=values["base_model"],
                snapshot=values["snapshot"], config=values["config"],
                reward_model=values.get("reward_model"), name=values["name"],
                created_by=request.user,
            )
        except ConfigError as exc:
            raise _config_error(exc) from None
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/training-runs/{run.pk}"})

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="only points with id above this"),
                    OpenApiParameter("split", str, enum=["train", "eval", "summary"])],
        responses=MetricSerializer(many=True))
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """The metrics stream: every logged point, oldest first; poll with ?after=<last id>."""
        run = self.get_object()
        points = run.metrics.all()
        if (after := id_param(request.query_params, "after")) is not None:
            points = points.filter(pk__gt=after)
        split = request.query_params.get("split")
        if split:
            if split not in TrainingMetric.Split.values:
                raise serializers.ValidationError({"split": "must be train, eval or summary"})
            points = points.filter(split=split)
        return Response(MetricSerializer(points[:METRICS_LIMIT], many=True).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """The run's events (every attempt's job log) and the tail of the trainer's output."""
        run = self.get_object()
        jobs = Job.objects.filter(subject=f"training-run:{run.pk}").values_list("pk", flat=True)
        entries = JobLogEntry.objects.filter(job_id__in=list(jobs)).order_by("id")
        trainer_output = ""
        if run.log_path.is_file():
            with open(run.log_path, "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
                trainer_output = handle.read().decode(errors="replace")
        return Response({
            "events": [{"at": e.at, "job": e.job_id, "level": e.level, "message": e.message}
                       for e in entries],
            "trainer_output": trainer_output,
        })

    @extend_schema(request=None, responses=TrainingRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Queued: cancelled at once. Running: the trainer saves a checkpoint, then stops."""
        run = cancel_run(self.get_object())
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """A failed or cancelled run continues from its last checkpoint."""
        try:
            run = resume_run(self.get_object(), request.user)
        except RunStateError as exc:
            raise exceptions.ValidationError({"status": str(exc)}) from None
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/v1/training-runs/{run.pk}"})

    @extend_schema(
        parameters=[OpenApiParameter("file", str, description="download this file (a path "
                                     "relative to the run's folder, as listed)")],
        responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def artifacts(self, request, pk=None):
        """The files a run wrote (artifact, merged model): listed, or one downloaded."""
        run = self.get_object()
        roots = [p for p in (run.artifact_dir, run.merged_dir) if p.is_dir()]
        wanted = request.query_params.get("file")
        if wanted:
            target = (run.output_dir / wanted).resolve()
            if not any(target.is_relative_to(root.resolve()) for root in roots) or not target.is_file():
                raise exceptions.NotFound(f"no artifact file {wanted!r} in run {run.pk}")
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            return FileResponse(open(target, "rb"), as_attachment=True, filename=target.name,
                                content_type=content_type)
        files = []
        for root in roots:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    files.append({"file": str(path.relative_to(run.output_dir)),
                                  "bytes": path.stat().st_size})
        return Response({
            "artifact": RegisteredModelSerializer(run.artifact).data if run.artifact else None,
            "merged_model": (RegisteredModelSerializer(run.merged_model).data
                             if run.merged_model else None),
            "files": files,
        })

