"""Pipelines: ordered steps with validated configs, applied to a dataset, and reverted.

A step is a function `(StepContext, config) -> summary dict` registered with `@step(name,
ConfigSerializer)`. It reads the dataset's kept records and responses and states what it
decides through the context (`drop_record`, `redact`, ...); the context writes every decision
with the state it replaced, so `revert_run` can put back exactly what was there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from corpus.models import CurationStatus, Dataset, Record, Response

from .models import CurationDecision, CurationRun, PIIFinding

EXAMPLES_PER_RULE = 3


@dataclass(frozen=True)
class StepType:
    name: str
    config_serializer: type[serializers.Serializer]
    func: Callable[["StepContext", dict], dict]
    help: str


STEPS: dict[str, StepType] = {}


def step(name: str, config_serializer, help: str = ""):
    def register(func):
        STEPS[name] = StepType(name, config_serializer, func, help or (func.__doc__ or "").strip())
        return func

    return register


class PipelineStepSerializer(serializers.Serializer):
    step = serializers.CharField()
    config = serializers.DictField(required=False, default=dict)

    def validate(self, attrs):
        step_type = STEPS.get(attrs["step"])
        if step_type is None:
            raise serializers.ValidationError(
                {"step": f"unknown step {attrs['step']!r}; one of {', '.join(sorted(STEPS))}"})
        config = step_type.config_serializer(data=attrs.get("config") or {})
        if not config.is_valid():
            raise serializers.ValidationError({"config": config.errors})
        unknown = set(attrs.get("config") or {}) - set(config.fields)
        if unknown:
            raise serializers.ValidationError(
                {"config": {sorted(unknown)[0]: [f"unknown option for step {attrs['step']}"]}})
        return {"step": attrs["step"], "config": dict(config.validated_data)}


def validate_pipeline(pipeline) -> list[dict]:
    """The pipeline with every config completed by its defaults; ValidationError names the
    failing field as `pipeline.<index>.config.<option>`."""
    field = PipelineStepSerializer(many=True, allow_empty=False)
    try:
        return [dict(item) for item in field.run_validation(pipeline)]
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"pipeline": exc.detail}) from None


def default_pipeline() -> list[dict]:
    return validate_pipeline([
        {"step": "quality"},
        {"step": "exact_dedup"},
        {"step": "near_dedup"},
        {"step": "pii"},
    ])


@dataclass
class StepContext:
    run: CurationRun
    step_index: int
    step_name: str
    progress: Callable[[int, int | None], None] = lambda done, total=None: None
    decisions: list[CurationDecision] = field(default_factory=list)
    findings: list[tuple[int, PIIFinding]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)
    _record_updates: dict[int, Record] = field(default_factory=dict)
    _response_updates: dict[int, Response] = field(default_factory=dict)

    @property
    def dataset(self) -> Dataset:
        return self.run.dataset

    def kept_records(self):
        return Record.objects.filter(dataset=self.dataset, status=CurationStatus.KEPT)

    def kept_responses(self):
        return Response.objects.filter(record__dataset=self.dataset, status=CurationStatus.KEPT,
                                       record__status=CurationStatus.KEPT)

    def _note(self, decision: CurationDecision, example: str) -> None:
        self.decisions.append(decision)
        self.counts[(decision.action, decision.rule)] += 1
        bucket = self.examples.setdefault(decision.rule, [])
        if len(bucket) < EXAMPLES_PER_RULE:
            bucket.append({"record": decision.record_id, "response": decision.response_id,
                           "action": decision.action, "reason": decision.reason,
                           "text": example[:300]})

    def _decision(self, item, action, rule, reason, **extra) -> CurationDecision:
        is_record = isinstance(item, Record)
        return CurationDecision(
            run=self.run, step_index=self.step_index, step=self.step_name,
            record_id=item.pk if is_record else item.record_id,
            response_id=None if is_record else item.pk,
            action=action, rule=rule, reason=reason,
            previous_status=item.status, previous_reason=item.status_reason,
            previous_dup_cluster=getattr(item, "dup_cluster", ""), **extra)

    def drop(self, item: Record | Response, rule: str, reason: str, *, cluster: str = "",
             similarity: float | None = None, details: dict | None = None) -> None:
        decision = self._decision(item, CurationDecision.Action.DROPPED, rule, reason,
                                  cluster=cluster, similarity=similarity, details=details or {})
        item.status = CurationStatus.DROPPED
        item.status_reason = reason
        if cluster and isinstance(item, Record):
            item.dup_cluster = cluster
        self._track(item)
        self._note(decision, item.prompt if isinstance(item, Record) else item.text)

    def keep_representative(self, record: Record, rule: str, cluster: str, size: int) -> None:
        decision = self._decision(record, CurationDecision.Action.KEPT, rule,
                                  f"kept as the representative of {cluster} ({size} records)",
                                  cluster=cluster, details={"size": size})
        record.dup_cluster = cluster
        self._track(record)
        self._note(decision, record.prompt)

    def flag(self, item, rule: str, reason: str, details: dict | None = None) -> CurationDecision:
        decision = self._decision(item, CurationDecision.Action.FLAGGED, rule, reason,
                                  details=details or {})
        self._note(decision, item.prompt if isinstance(item, Record) else item.text)
        return decision

    def redact(self, item, field_name: str, new_text: str, rule: str, reason: str,
               details: dict | None = None) -> CurationDecision:
        old = getattr(item, field_name)
        decision = self._decision(item, CurationDecision.Action.REDACTED, rule, reason,
                                  field=field_name, previous_text=old, details=details or {})
        setattr(item, field_name, new_text)
        self._track(item)
        self._note(decision, new_text)
        return decision

    def _track(self, item) -> None:
        (self._record_updates if isinstance(item, Record) else self._response_updates)[item.pk] = item

    def flush(self) -> None:
        """Write the step's decisions and changes (called inside the step's transaction)."""
        if self._record_updates:
            Record.objects.bulk_update(
                list(self._record_updates.values()),
                ["status", "status_reason", "dup_cluster", "prompt", "context"], batch_size=500)
        if self._response_updates:
            Response.objects.bulk_update(
                list(self._response_updates.values()), ["status", "status_reason", "text"],
                batch_size=500)
        CurationDecision.objects.bulk_create(self.decisions, batch_size=1000)
        if self.findings:
            for decision_index, finding in self.findings:
                finding.decision = self.decisions[decision_index] if decision_index >= 0 else None
            PIIFinding.objects.bulk_create([f for _, f in self.findings], batch_size=1000)


def run_step(run: CurationRun, index: int, spec: dict, progress=None) -> dict:
    step_type = STEPS[spec["step"]]
    ctx = StepContext(run, index, spec["step"], progress=progress or (lambda *a, **k: None))
    summary = step_type.func(ctx, spec["config"]) or {}
    ctx.flush()
    by_action = Counter()
    by_rule = Counter()
    for (action, rule), n in ctx.counts.items():
        by_action[action] += n
        by_rule[f"{action}:{rule}"] += n
    return {"step": spec["step"], "config": spec["config"], "counts": dict(by_action),
            "by_rule": dict(by_rule), "examples": ctx.examples, **summary}


class RevertRefused(Exception):
    pass


def revert_run(run: CurationRun, user=None) -> dict:
    """Put back everything the run changed, newest decision first, in one transaction.

    Only the dataset's latest not-yet-reverted run can be reverted: an earlier run's 'previous
    state' may have been changed again by the later one.
    """
    with transaction.atomic():
        run = CurationRun.objects.select_for_update().get(pk=run.pk)
        if run.status == CurationRun.Status.REVERTED:
            raise RevertRefused("this run is already reverted")
        if run.status in (CurationRun.Status.QUEUED, CurationRun.Status.RUNNING):
            raise RevertRefused("this run has not finished; cancel it first")
        later = CurationRun.objects.filter(dataset=run.dataset_id, pk__gt=run.pk).exclude(
            status__in=[CurationRun.Status.REVERTED, CurationRun.Status.FAILED,
                        CurationRun.Status.CANCELLED])
        if later.exists():
            raise RevertRefused(f"revert the later run #{later.order_by('-pk').first().pk} first")
        restored = undo_decisions(run)
        run.status = CurationRun.Status.REVERTED
        run.reverted_at = timezone.now()
        run.reverted_by = user if user is not None and user.is_authenticated else None
        run.save(update_fields=["status", "reverted_at", "reverted_by"])
    return restored


def undo_decisions(run: CurationRun, from_step: int = 0) -> dict:
    """Restore the previous state of every decision of `run` (from step `from_step` on).
    The decisions and findings stay, as the record of what the run did."""
    records: dict[int, Record] = {}
    responses: dict[int, Response] = {}
    decisions = list(run.decisions.filter(step_index__gte=from_step).order_by("-id"))
    record_ids = {d.record_id for d in decisions if d.response_id is None}
    response_ids = {d.response_id for d in decisions if d.response_id is not None}
    records = Record.objects.in_bulk(record_ids)
    responses = Response.objects.in_bulk(response_ids)
    for decision in decisions:  # newest first: the oldest previous state wins
        item = responses.get(decision.response_id) if decision.response_id else records.get(decision.record_id)
        if item is None:
            continue
        item.status = decision.previous_status or CurationStatus.KEPT
        item.status_reason = decision.previous_reason
        if isinstance(item, Record):
            item.dup_cluster = decision.previous_dup_cluster
        if decision.previous_text is not None and decision.field:
            setattr(item, decision.field, decision.previous_text)
    Record.objects.bulk_update(list(records.values()),
                               ["status", "status_reason", "dup_cluster", "prompt", "context"],
                               batch_size=500)
    Response.objects.bulk_update(list(responses.values()), ["status", "status_reason", "text"],
                                 batch_size=500)
    return {"records": len(records), "responses": len(responses), "decisions": len(decisions)}
