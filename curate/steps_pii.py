"""Pipeline step: PII detection with a policy per entity, findings stored for review."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from . import pii
from .models import PIIFinding
from .pipeline import StepContext, step


class PIIConfig(serializers.Serializer):
    entities = serializers.MultipleChoiceField(choices=list(pii.ENTITIES), default=list(pii.ENTITIES))
    default_policy = serializers.ChoiceField(pii.POLICIES, default="redact")
    policies = serializers.DictField(
        child=serializers.ChoiceField(pii.POLICIES), default=dict,
        help_text="Per entity, e.g. {\"PERSON\": \"fake\", \"URL\": \"flag\"}")
    min_score = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)
    targets = serializers.MultipleChoiceField(choices=["prompts", "responses"],
                                              default=["prompts", "responses"])
    private_ips = serializers.BooleanField(
        default=False, help_text="Also report private, link-local and loopback addresses")
    review = serializers.BooleanField(
        default=True, help_text="Findings wait in the review queue (else they are approved)")
    processes = serializers.IntegerField(min_value=0, max_value=64, default=0,
                                         help_text="Detector processes; 0: the server setting")

    def validate_policies(self, value):
        unknown = set(value) - set(pii.ENTITIES)
        if unknown:
            raise serializers.ValidationError(
                f"unknown entity {sorted(unknown)[0]!r}; one of {', '.join(pii.ENTITIES)}")
        return value

    def validate(self, attrs):
        attrs["entities"] = sorted(attrs["entities"])
        attrs["targets"] = sorted(attrs["targets"])
        return attrs


@step("pii", PIIConfig,
      "PII: e-mail, phone, credit card, IBAN, IP, US SSN, person, URL, secrets; flag, redact "
      "(<EMAIL>), mask or fake per entity; findings go to the review queue.")
def detect_pii(ctx: StepContext, config: dict) -> dict:
    items = []  # (item, field, text)
    if "prompts" in config["targets"]:
        for record in ctx.kept_records().only("id", "prompt", "context", "status",
                                              "status_reason", "dup_cluster"):
            items.append((record, "prompt", record.prompt))
            if record.context:
                items.append((record, "context", record.context))
    if "responses" in config["targets"]:
        for response in ctx.kept_responses().only("id", "record_id", "text", "status",
                                                  "status_reason"):
            items.append((response, "text", response.text))
    total = len(items)
    ctx.progress(0, total)
    found = pii.detect_many(
        [text for _, _, text in items], entities=config["entities"],
        min_score=config["min_score"], private_ips=config["private_ips"],
        processes=config["processes"] or settings.WINNOW_CURATE_PII_PROCESSES,
        on_progress=lambda done: ctx.progress(done, total))
    policies = {e: config["policies"].get(e, config["default_policy"]) for e in pii.ENTITIES}
    salt = settings.SECRET_KEY
    review = PIIFinding.Review.PENDING if config["review"] else PIIFinding.Review.APPROVED
    per_entity: dict[str, int] = {}
    for (item, field, text), findings in zip(items, found):
        if not findings:
            continue
        new_text, applied = pii.apply_policies(text, findings, policies, salt)
        kinds = sorted({f.entity for f in findings})
        reason = f"PII: {', '.join(kinds)} in {field}"
        if new_text != text:
            decision = ctx.redact(item, field, new_text, f"pii:{'+'.join(kinds)}", reason)
        else:
            decision = ctx.flag(item, f"pii:{'+'.join(kinds)}", reason)
        index = len(ctx.decisions) - 1
        is_record = decision.response_id is None
        for finding, policy, replacement in applied:
            per_entity[finding.entity] = per_entity.get(finding.entity, 0) + 1
            ctx.findings.append((index, PIIFinding(
                run=ctx.run, record_id=decision.record_id,
                response_id=None if is_record else decision.response_id, field=field,
                entity_type=finding.entity, start=finding.start, end=finding.end,
                score=finding.score, original=text[finding.start:finding.end], policy=policy,
                replacement=replacement, review_status=review)))
    ctx.progress(total, total)
    return {"texts_checked": total, "entities": per_entity}
