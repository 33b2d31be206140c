"""REST: curation runs (create, list, report, decisions, revert) and the PII review queue."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response as APIResponse

from corpus import access
from corpus.models import Dataset
from jobs.api import JobListSerializer
from winnow.api import IdCursorPagination, id_param, username_field
from winnow.roles import IsManager, ManagerOrReadOnly

from .models import CurationDecision, CurationRun, PIIFinding
from .pipeline import STEPS, RevertRefused, revert_run, validate_pipeline
from .review import ReviewError, review_finding
from .runs import start_run


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class CurationRunSerializer(serializers.ModelSerializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.none())
    pipeline = serializers.JSONField(
        required=False,
        help_text="Ordered steps [{step, config}]; default: quality, exact_dedup, near_dedup, "
                  "pii. Steps: " + ", ".join(sorted(STEPS)))
    job = JobListSerializer(read_only=True)
    created_by = username_field()

    class Meta:
        model = CurationRun
        fields = ["id", "dataset", "pipeline", "status", "job", "report", "error", "created_by",
                  "created_at", "finished_at", "reverted_at"]
        read_only_fields = ["id", "status", "job", "report", "error", "created_by", "created_at",
                            "finished_at", "reverted_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["dataset"].queryset = access.visible_datasets(request.user)

    def validate_pipeline(self, value):
        return _pipeline_or_error(value)


def _pipeline_or_error(value):
    try:
        return validate_pipeline(value)
    except serializers.ValidationError as exc:
        # validate_pipeline names the field "pipeline"; this serializer adds that prefix itself.
        raise serializers.ValidationError(exc.detail["pipeline"]) from None


class CurationRunListSerializer(CurationRunSerializer):
    class Meta(CurationRunSerializer.Meta):
        fields = [f for f in CurationRunSerializer.Meta.fields if f not in ("report",)]


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = CurationDecision
        fields = ["id", "step_index", "step", "record", "response", "action", "rule", "reason",
                  "cluster", "similarity", "previous_status", "field", "details"]
        read_only_fields = fields


class CurationRunViewSet(mixins.CreateModelMixin, mixins.ListModelMixin,
                         mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Curation runs. POST queues a run (202, Location: the run); GET one for its report;
    POST .../revert undoes it; GET .../decisions lists what it did, item by item."""

    permission_classes = [ManagerOrReadOnly]

    def get_queryset(self):
        runs = CurationRun.objects.filter(
            dataset__in=access.visible_datasets(self.request.user).values("pk")
        ).select_related("job", "created_by")
        if (dataset := id_param(self.request.query_params, "dataset")) is not None:
            runs = runs.filter(dataset_id=dataset)
        return runs

    def get_serializer_class(self):
        return CurationRunListSerializer if self.action == "list" else CurationRunSerializer

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = start_run(serializer.validated_data["dataset"],
                        serializer.validated_data.get("pipeline"), request.user)
        body = CurationRunSerializer(run, context=self.get_serializer_context()).data
        return APIResponse(body, status=status.HTTP_202_ACCEPTED,
                           headers={"Location": f"/api/v1/curation-runs/{run.pk}"})

    @extend_schema(request=None, responses={200: CurationRunSerializer})
    @action(detail=True, methods=["post"])
    def revert(self, request, pk=None):
        run = self.get_object()
        try:
            restored = revert_run(run, request.user)
        except RevertRefused as exc:
            raise Conflict(str(exc)) from None
        run.refresh_from_db()
        body = CurationRunSerializer(run, context=self.get_serializer_context()).data
        return APIResponse({**body, "restored": restored})

    @extend_schema(responses={200: DecisionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def decisions(self, request, pk=None):
        run = self.get_object()
        decisions = run.decisions.all()
        for name in ("action", "rule", "step"):
            value = request.query_params.get(name)
            if value:
                decisions = decisions.filter(**{name: value})
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(decisions, request, view=self)
        return paginator.get_paginated_response(DecisionSerializer(page, many=True).data)


class PIIFindingSerializer(serializers.ModelSerializer):
    reviewed_by = username_field()

    class Meta:
        model = PIIFinding
        fields = ["id", "run", "record", "response", "field", "entity_type", "start", "end",
                  "score", "original", "policy", "replacement", "review_status", "reviewed_by",
                  "reviewed_at"]
        read_only_fields = fields


@extend_schema_serializer(component_name="PIIReview")
class ReviewSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(["approve", "edit", "reject"])
    replacement = serializers.CharField(required=False, allow_blank=True,
                                        help_text="For edit: the text to put in place of the span")

    def validate(self, attrs):
        if attrs["decision"] == "edit" and "replacement" not in attrs:
            raise serializers.ValidationError({"replacement": "required when the decision is edit"})
        return attrs


class PIIFindingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        viewsets.GenericViewSet):
    """The PII review queue: findings of curation runs, pending first. POST .../review with
    approve, edit (+ replacement) or reject (a false alarm: the original is put back)."""

    permission_classes = [IsManager]
    serializer_class = PIIFindingSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self):
        findings = PIIFinding.objects.exclude(run__status=CurationRun.Status.REVERTED)
        params = self.request.query_params
        review = params.get("review_status")
        if review:
            if review not in PIIFinding.Review.values:
                raise exceptions.ValidationError(
                    {"review_status": f"one of {', '.join(PIIFinding.Review.values)}"})
            findings = findings.filter(review_status=review)
        for name in ("run", "record"):
            if (value := id_param(params, name)) is not None:
                findings = findings.filter(**{f"{name}_id": value})
        entity = params.get("entity_type")
        if entity:
            findings = findings.filter(entity_type=entity)
        return findings.select_related("reviewed_by")

    @extend_schema(request=ReviewSerializer, responses={200: PIIFindingSerializer})
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        finding = self.get_object()
        serializer = ReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                finding = review_finding(finding, serializer.validated_data["decision"],
                                         serializer.validated_data.get("replacement"),
                                         request.user, now=timezone.now())
        except ReviewError as exc:
            raise Conflict(str(exc)) from None
        return APIResponse(PIIFindingSerializer(finding).data)
