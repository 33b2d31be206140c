"""Pipeline step: quality filters on prompts and responses."""

from __future__ import annotations

import re

from rest_framework import serializers

from . import quality
from .pipeline import StepContext, step


class RegexRuleSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_\-]{1,40}$", help_text="Shown in reasons")
    pattern = serializers.CharField()
    target = serializers.ChoiceField(["prompts", "responses", "both"], default="both")
    action = serializers.ChoiceField(["drop", "flag"], default="drop")
    ignore_case = serializers.BooleanField(default=True)

    def validate(self, attrs):
        try:
            re.compile(attrs["pattern"], re.IGNORECASE if attrs["ignore_case"] else 0)
        except re.error as exc:
            raise serializers.ValidationError({"pattern": f"not a valid regular expression: {exc}"})
        return attrs


class QualityConfig(serializers.Serializer):
    targets = serializers.MultipleChoiceField(choices=["prompts", "responses"],
                                              default=["prompts", "responses"])
    min_prompt_chars = serializers.IntegerField(min_value=0, default=3)
    max_prompt_chars = serializers.IntegerField(min_value=1, default=100_000)
    min_response_chars = serializers.IntegerField(min_value=0, default=1)
    max_response_chars = serializers.IntegerField(min_value=1, default=100_000)
    repetition_n = serializers.IntegerField(min_value=1, max_value=10, default=3)
    max_repetition = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)
    drop_truncated = serializers.BooleanField(default=True)
    refusal_phrases = serializers.BooleanField(default=True,
                                               help_text="Drop responses with refusal/boilerplate")
    extra_phrases = serializers.ListField(child=serializers.CharField(), default=list)
    check_encoding = serializers.BooleanField(default=True)
    language = serializers.ChoiceField(["en", ""], default="",
                                       help_text="'en': flag text that does not look English")
    min_language_score = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.15)
    regex_rules = RegexRuleSerializer(many=True, default=list)

    def validate(self, attrs):
        if attrs["min_prompt_chars"] > attrs["max_prompt_chars"]:
            raise serializers.ValidationError({"min_prompt_chars": "must not exceed max_prompt_chars"})
        if attrs["min_response_chars"] > attrs["max_response_chars"]:
            raise serializers.ValidationError({"min_response_chars": "must not exceed max_response_chars"})
        attrs["targets"] = sorted(attrs["targets"])
        attrs["regex_rules"] = [dict(r) for r in attrs["regex_rules"]]
        return attrs


def _checks(config: dict, is_response: bool):
    phrases = list(quality.DEFAULT_REFUSALS) if config["refusal_phrases"] else []
    phrases += config["extra_phrases"]
    low, high = ((config["min_response_chars"], config["max_response_chars"]) if is_response
                 else (config["min_prompt_chars"], config["max_prompt_chars"]))
    rules = [(r, re.compile(r["pattern"], re.IGNORECASE if r["ignore_case"] else 0))
             for r in config["regex_rules"]
             if r["target"] in ("both", "responses" if is_response else "prompts")]

    def check(text: str, finish_reason=None):
        """(action, rule, reason) of the first failing check, or None."""
        if config["check_encoding"] and (hit := quality.encoding_violation(text)):
            return ("drop", *hit)
        if hit := quality.length_violation(text, low, high):
            return ("drop", *hit)
        if hit := quality.repetition_violation(text, config["repetition_n"], config["max_repetition"]):
            return ("drop", *hit)
        if is_response and config["drop_truncated"] and (
                hit := quality.truncation_violation(text, finish_reason)):
            return ("drop", *hit)
        if is_response and phrases and (hit := quality.phrase_violation(text, phrases)):
            return ("drop", *hit)
        for rule, pattern in rules:
            if pattern.search(text):
                return (rule["action"], f"regex:{rule['name']}",
                        f"matches the rule {rule['name']!r} ({rule['pattern']})")
        if config["language"] and (hit := quality.language_violation(
                text, config["language"], config["min_language_score"])):
            return ("flag", *hit)
        return None

    return check


@step("quality", QualityConfig,
      "Length bounds, repetition, empty/truncated responses, refusals and boilerplate, "
      "invalid UTF-8 and control characters, a light language check, regex rules.")
def quality_filters(ctx: StepContext, config: dict) -> dict:
    checked = 0
    if "prompts" in config["targets"]:
        check = _checks(config, is_response=False)
        records = list(ctx.kept_records().only("id", "prompt", "context", "status",
                                               "status_reason", "dup_cluster"))
        for record in records:
            text = f"{record.prompt}\n{record.context}" if record.context else record.prompt
            if hit := check(text):
                _apply(ctx, record, hit)
            checked += 1
            if checked % 1000 == 0:
                ctx.progress(checked)
    if "responses" in config["targets"]:
        check = _checks(config, is_response=True)
        for response in ctx.kept_responses().only("id", "record_id", "text", "status",
                                                  "status_reason", "generation_params",
                                                  "provenance"):
            finish = ((response.generation_params or {}).get("finish_reason")
                      or (response.provenance or {}).get("finish_reason"))
            if hit := check(response.text, finish):
                _apply(ctx, response, hit)
            checked += 1
            if checked % 1000 == 0:
                ctx.progress(checked)
    return {"checked": checked}


def _apply(ctx: StepContext, item, hit) -> None:
    action, rule, reason = hit
    if action == "drop":
        ctx.drop(item, rule, reason)
    else:
        ctx.flag(item, rule, reason)
