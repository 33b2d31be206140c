"""REST views for the corpus: datasets, records, responses, feedback, imports."""

import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Prefetch, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response as APIResponse

from jobs.api import JobSerializer
from jobs.runner import create_job
from winnow.api import IdCursorPagination, id_param, username_field
from winnow.roles import ManagerOrReadOnly

from . import access
from .feedback import PayloadError, validate_payload
from .formats import FILE_FORMATS, SHAPES, detect_file_format
from .importing import KIND as IMPORT_KIND
from .importing import ImportRequest
from .models import AuthorKind, CurationStatus, Dataset, Feedback, Record, Response

METADATA_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MESSAGE_ROLES = ("system", "user", "assistant")


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The upload is too large."


# -- serializers -----------------------------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    owner = username_field()
    record_count = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "owner", "record_count", "created_at", "updated_at"]

    def get_record_count(self, dataset) -> int:
        annotated = getattr(dataset, "record_count", None)  # lists annotate it in one query
        return annotated if annotated is not None else dataset.records.count()


class ResponseSerializer(serializers.ModelSerializer):
    author = username_field()
    record = serializers.PrimaryKeyRelatedField(queryset=Record.objects.none())
    author_kind = serializers.ChoiceField(choices=AuthorKind.choices, default=AuthorKind.HUMAN)
    edited_from = serializers.PrimaryKeyRelatedField(
        queryset=Response.objects.none(), required=False, allow_null=True
    )

    class Meta:
        model = Response
        fields = [
            "id", "record", "text", "author_kind", "author", "model_name", "generation_params",
            "provenance", "edited_from", "status", "status_reason", "created_at",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["record"].queryset = access.visible_records(request.user)
            self.fields["edited_from"].queryset = access.visible_responses(request.user)
        if self.instance is not None and not isinstance(self.instance, list):
            self.fields["record"].read_only = True

    def validate(self, attrs):
        record = attrs.get("record") or getattr(self.instance, "record", None)
        edited_from = attrs.get("edited_from")
        if edited_from is not None and edited_from.record_id != record.pk:
            raise serializers.ValidationError({"edited_from": "must be a response of the same record"})
        kind = attrs.get("author_kind", getattr(self.instance, "author_kind", None))
        model_name = attrs.get("model_name", getattr(self.instance, "model_name", ""))
        if kind == AuthorKind.MODEL and not model_name:
            raise serializers.ValidationError({"model_name": "is required when author_kind is model"})
        if _status_needs_reason(attrs):
            raise serializers.ValidationError({"status_reason": "say why the response is dropped"})
        return attrs

    def create(self, validated):
        if validated.get("author_kind") == AuthorKind.HUMAN:
            validated["author"] = self.context["request"].user
        return super().create(validated)


class NestedResponseSerializer(serializers.ModelSerializer):
    author_kind = serializers.ChoiceField(choices=AuthorKind.choices, default=AuthorKind.HUMAN)

    class Meta:
        model = Response
        fields = [
            "id", "text", "author_kind", "model_name", "generation_params", "edited_from",
            "status", "status_reason", "created_at",
        ]
        read_only_fields = ["id", "edited_from", "status", "status_reason", "created_at"]

    def validate(self, attrs):
        if attrs.get("author_kind") == AuthorKind.MODEL and not attrs.get("model_name"):
            raise serializers.ValidationError({"model_name": "is required when author_kind is model"})
        return attrs


class FeedbackSerializer(serializers.ModelSerializer):
    author = username_field()
    record = serializers.PrimaryKeyRelatedField(queryset=Record.objects.none())
    author_kind = serializers.ChoiceField(choices=AuthorKind.choices, default=AuthorKind.HUMAN)
    payload = serializers.JSONField(
        help_text="Per kind, see docs/api.md: rating {response, value, scale_min, scale_max, "
        "aspect, rationale}; ranking {ranking: [[id], [id, id]], all_bad}; pairwise {a, b, "
        "choice: a|b|tie, strength}; binary {response, label, reason}; edit {response, edited}"
    )

    class Meta:
        model = Feedback
        fields = [
            "id", "record", "kind", "payload", "author_kind", "author", "model_name",
            "provenance", "created_at", "updated_at",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["record"].queryset = access.visible_records(request.user)
        if self.instance is not None and not isinstance(self.instance, list):
            self.fields["record"].read_only = True
            self.fields["kind"].read_only = True

    def validate(self, attrs):
        record = attrs.get("record") or self.instance.record
        kind = attrs.get("kind") or self.instance.kind
        payload = attrs.get("payload", getattr(self.instance, "payload", None))
        response_ids = set(record.responses.values_list("pk", flat=True))
        try:
            attrs["payload"] = validate_payload(kind, payload, response_ids)
        except PayloadError as exc:
            raise serializers.ValidationError({f"payload.{exc.field}": exc.reason}) from None
        if kind == Feedback.Kind.EDIT:
            edited = Response.objects.get(pk=attrs["payload"]["edited"])
            if edited.edited_from_id != attrs["payload"]["response"]:
                raise serializers.ValidationError(
                    {"payload.edited": "the rewrite must name the original in its edited_from"}
                )
        author_kind = attrs.get("author_kind", getattr(self.instance, "author_kind", None))
        model_name = attrs.get("model_name", getattr(self.instance, "model_name", ""))
        if author_kind == AuthorKind.MODEL and not model_name:
            raise serializers.ValidationError({"model_name": "is required when author_kind is model"})
        return attrs

    def create(self, validated):
        if validated.get("author_kind") == AuthorKind.HUMAN:
            validated["author"] = self.context["request"].user
        return super().create(validated)


def _validate_messages(value):
    if not isinstance(value, list):
        raise serializers.ValidationError("must be a list of {role, content} messages")
    for index, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in MESSAGE_ROLES
            or not isinstance(message["content"], str)
        ):
            raise serializers.ValidationError(
                f"message {index} must be {{role: system|user|assistant, content: string}}"
            )
    return value


def _status_needs_reason(attrs) -> bool:
    return attrs.get("status") == CurationStatus.DROPPED and not attrs.get("status_reason")


class RecordSerializer(serializers.ModelSerializer):
    responses = NestedResponseSerializer(many=True, required=False)
    history = serializers.JSONField(required=False, validators=[_validate_messages])
    metadata = serializers.DictField(required=False)

    class Meta:
        model = Record
        fields = [
            "id", "dataset", "kind", "prompt", "context", "history", "metadata", "external_id",
            "source", "provenance", "status", "status_reason", "created_at", "responses",
        ]
        read_only_fields = ["id", "dataset", "created_at"]

    def validate(self, attrs):
        if _status_needs_reason(attrs):
            raise serializers.ValidationError({"status_reason": "say why the record is dropped"})
        dataset = self.context.get("dataset") or getattr(self.instance, "dataset", None)
        external_id = attrs.get("external_id")
        if external_id and dataset is not None:
            clash = Record.objects.filter(dataset=dataset, external_id=external_id)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError(
                    {"external_id": f"{external_id!r} is already used in this dataset"}
                )
        if self.instance is not None and "responses" in attrs:
            raise serializers.ValidationError(
                {"responses": "add responses through /api/v1/responses"}
            )
        return attrs

    @transaction.atomic
    def create(self, validated):
        responses = validated.pop("responses", [])
        record = Record.objects.create(dataset=self.context["dataset"], **validated)
        user = self.context["request"].user
        for response in responses:
            author = user if response["author_kind"] == AuthorKind.HUMAN else None
            Response.objects.create(record=record, author=author, **response)
        return record


class RecordDetailSerializer(RecordSerializer):
    feedback = FeedbackSerializer(many=True, read_only=True)

    class Meta(RecordSerializer.Meta):
        fields = [*RecordSerializer.Meta.fields, "feedback"]
        read_only_fields = [*RecordSerializer.Meta.read_only_fields, "responses", "feedback"]


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL, JSON array, CSV or Parquet")
    format = serializers.ChoiceField(choices=FILE_FORMATS, required=False,
                                     help_text="Default: from the file name or its first bytes")
    shape = serializers.ChoiceField(choices=SHAPES, required=False,
                                    help_text="Default: from the first row's keys")
    skip_invalid = serializers.BooleanField(
        default=False, help_text="Load the valid rows and report the bad ones, instead of "
        "writing nothing when any row is bad"
    )
    response_author_kind = serializers.ChoiceField(choices=AuthorKind.choices, default=AuthorKind.HUMAN)
    model_name = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    source = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)

    def validate_file(self, upload):
        if upload.size > settings.WINNOW_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(_too_large_message())
        if upload.size == 0:
            raise serializers.ValidationError("the file is empty: no rows to import")
        return upload

    def validate(self, attrs):
        upload = attrs["file"]
        if "format" not in attrs:
            head = upload.read(4096)
            upload.seek(0)
            if detect_file_format(upload.name, head) is None:
                raise serializers.ValidationError(
                    {"format": "cannot tell the file format from the name or content; "
                               "name it: jsonl, json, csv or parquet"}
                )
        return attrs


def _too_large_message() -> str:
    cap = settings.WINNOW_MAX_UPLOAD_BYTES
    return f"The upload is larger than the {cap:,}-byte limit (WINNOW_MAX_UPLOAD_BYTES)."


# -- views -----------------------------------------------------------------------------------


class DatasetViewSet(viewsets.ModelViewSet):
    """Datasets. Managers and admins see and change all of them; annotators see the ones
    they are assigned to, read-only."""

    serializer_class = DatasetSerializer
    permission_classes = [ManagerOrReadOnly]

    def get_queryset(self):
        return (
            access.visible_datasets(self.request.user)
            .select_related("owner")
            .annotate(record_count=Count("records"))
            .order_by("-id")
        )

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)

    @extend_schema(
        request={"multipart/form-data": ImportSerializer},
        responses={202: JobSerializer},
        summary="Import a file into the dataset (runs as a background job)",
    )
    @action(detail=True, methods=["post"], url_path="import",
            parser_classes=[MultiPartParser, FormParser])
    def import_file(self, request, pk=None):
        length = request.META.get("CONTENT_LENGTH")
        if length and length.isascii() and length.isdigit() and int(length) > settings.WINNOW_MAX_UPLOAD_BYTES + 64 * 1024:
            raise PayloadTooLarge(_too_large_message())
        dataset = self.get_object()
        form = ImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        safe_name = Path(upload.name).name or "upload"
        stored = default_storage.save(f"imports/{uuid.uuid4().hex}/{safe_name}", upload)
        params = ImportRequest(
            dataset_id=dataset.pk, path=stored, filename=safe_name, stored=True,
            file_format=form.validated_data.get("format"), shape=form.validated_data.get("shape"),
            skip_invalid=form.validated_data["skip_invalid"],
            response_author_kind=form.validated_data["response_author_kind"],
            model_name=form.validated_data["model_name"], source=form.validated_data["source"],
        )
        with transaction.atomic():
            job = create_job(IMPORT_KIND, params=params.as_params(), subject=f"dataset:{dataset.pk}",
                             created_by=request.user)
        return APIResponse(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED,
                           headers={"Location": f"/api/v1/jobs/{job.pk}"})


RECORD_FILTERS = [
    OpenApiParameter("status", str, enum=[c for c, _ in CurationStatus.choices]),
    OpenApiParameter("source", str),
    OpenApiParameter("kind", str, enum=[c for c, _ in Record.Kind.choices]),
    OpenApiParameter("external_id", str),
    OpenApiParameter(
        "metadata.KEY", OpenApiTypes.STR,
        description="Records whose metadata KEY equals the value, e.g. ?metadata.category=open_qa",
    ),
]


def check_choice(params, name: str, choices) -> None:
    value = params.get(name)
    allowed = [choice for choice, _ in choices]
    if value and value not in allowed:
        raise serializers.ValidationError({name: f"must be one of {', '.join(allowed)}"})


def filter_records(records, params):
    check_choice(params, "status", CurationStatus.choices)
    check_choice(params, "kind", Record.Kind.choices)
    for name in ("status", "source", "kind", "external_id"):
        if params.get(name):
            records = records.filter(**{name: params[name]})
    for param, value in params.items():
        if not param.startswith("metadata."):
            continue
        key = param.removeprefix("metadata.")
        if not METADATA_KEY.match(key) or "__" in key:
            raise serializers.ValidationError(
                {param: "metadata keys are 1-64 letters, digits, '_' or '-'"}
            )
        alias = f"_meta_{len(records.query.annotations)}"
        # Compared as text, so ?metadata.n=1 matches the number 1 and the string "1" alike.
        as_text = Cast(KeyTextTransform(key, "metadata"), output_field=TextField())
        records = records.annotate(**{alias: as_text}).filter(
            **{alias: value}
        )
    return records


@extend_schema(parameters=RECORD_FILTERS)
class DatasetRecordList(generics.ListCreateAPIView):
    """A dataset's records with their responses (cursor-paginated, oldest first), or add one
    record with its responses in one transaction."""

    serializer_class = RecordSerializer
    permission_classes = [ManagerOrReadOnly]
    pagination_class = IdCursorPagination

    def dataset(self) -> Dataset:
        if not hasattr(self, "_dataset"):
            self._dataset = get_object_or_404(
                access.visible_datasets(self.request.user), pk=self.kwargs["dataset_id"]
            )
        return self._dataset

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if "dataset_id" in self.kwargs:  # absent while the schema is generated
            context["dataset"] = self.dataset()
        return context

    def get_queryset(self):
        records = Record.objects.filter(dataset=self.dataset()).prefetch_related(
            Prefetch("responses", queryset=Response.objects.order_by("id"))
        )
        return filter_records(records, self.request.query_params)


class RecordViewSet(
    mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """One record with its responses and feedback. PATCH edits it (e.g. status)."""

    serializer_class = RecordDetailSerializer
    permission_classes = [ManagerOrReadOnly]

    def get_queryset(self):
        return access.visible_records(self.request.user).prefetch_related(
            Prefetch("responses", queryset=Response.objects.order_by("id")),
            Prefetch("feedback", queryset=Feedback.objects.select_related("author").order_by("id")),
        )


@extend_schema(parameters=[
    OpenApiParameter("record", int), OpenApiParameter("dataset", int),
    OpenApiParameter("status", str), OpenApiParameter("author_kind", str),
])
class ResponseViewSet(viewsets.ModelViewSet):
    """Responses to records: model generations and human answers or rewrites."""

    serializer_class = ResponseSerializer
    permission_classes = [ManagerOrReadOnly]
    pagination_class = IdCursorPagination

    def get_queryset(self):
        responses = access.visible_responses(self.request.user).select_related("author")
        params = self.request.query_params
        if (record := id_param(params, "record")) is not None:
            responses = responses.filter(record_id=record)
        if (dataset := id_param(params, "dataset")) is not None:
            responses = responses.filter(record__dataset_id=dataset)
        check_choice(params, "status", CurationStatus.choices)
        check_choice(params, "author_kind", AuthorKind.choices)
        for name in ("status", "author_kind"):
            if params.get(name):
                responses = responses.filter(**{name: params[name]})
        return responses


@extend_schema(parameters=[
    OpenApiParameter("record", int), OpenApiParameter("dataset", int),
    OpenApiParameter("kind", str), OpenApiParameter("author_kind", str),
])
class FeedbackViewSet(viewsets.ModelViewSet):
    """Judgements on responses (rating, ranking, pairwise, binary, edit) by people or models."""

    serializer_class = FeedbackSerializer
    permission_classes = [ManagerOrReadOnly]
    pagination_class = IdCursorPagination

    def get_queryset(self):
        feedback = access.visible_feedback(self.request.user).select_related("author")
        params = self.request.query_params
        if (record := id_param(params, "record")) is not None:
            feedback = feedback.filter(record_id=record)
        if (dataset := id_param(params, "dataset")) is not None:
            feedback = feedback.filter(record__dataset_id=dataset)
        check_choice(params, "kind", Feedback.Kind.choices)
        check_choice(params, "author_kind", AuthorKind.choices)
        for name in ("kind", "author_kind"):
            if params.get(name):
                feedback = feedback.filter(**{name: params[name]})
        return feedback
