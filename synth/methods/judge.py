"""LLM-as-judge: rate responses on UltraFeedback's aspects (1-5 with a rationale) and compare
pairs with the positions swapped to cancel position bias.

Judgements are Feedback rows with author_kind "model" (see corpus.feedback for the payloads),
so AI and human feedback feed the same snapshot builders. Provenance:
{"method": "llm_judge", "provider": id, "job": id, "aspect": ..., "swapped": bool (pairwise)}.
Pairwise payloads always name the pair in one canonical order (a = the lower response id);
`swapped` says the judge saw them the other way round, and `shown` the order it saw.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

from pydantic import Field, field_validator

from corpus.models import Feedback, Response

from ..parsing import UnparseableReply, labelled_fields, parse_pairwise_choice, parse_rating
from .base import GenerationMethod, RecordInputConfig, register_method

# UltraFeedback's aspects, condensed to one line each for small judges.
ASPECTS = {
    "helpfulness": "Is the response useful, relevant and informative for the instruction?",
    "honesty": "Does the response express uncertainty where it should and avoid pretending to know?",
    "instruction_following": "Does the response do exactly what the instruction asks, in the requested form?",
    "truthfulness": "Is the response free of made-up facts and contradictions?",
    "overall": "How good is the response overall?",
}


class JudgeConfig(RecordInputConfig):
    mode: Literal["rating", "pairwise", "both"] = "rating"
    aspects: list[str] = Field(default_factory=lambda: ["helpfulness", "honesty", "instruction_following", "truthfulness"])
    max_pairs_per_record: int = Field(6, ge=1, le=100)
    model_responses_only: bool = Field(False, description="Judge only responses a model wrote")

    @field_validator("aspects")
    @classmethod
    def _aspects(cls, value):
        if not value:
            raise ValueError("give at least one aspect")
        unknown = [a for a in value if a not in ASPECTS]
        if unknown:
            raise ValueError(f"unknown aspect {unknown[0]!r}; one of {', '.join(ASPECTS)}")
        return list(dict.fromkeys(value))


@register_method
class LLMJudge(GenerationMethod):
    name = "judge"
    title = "LLM-as-judge: ratings and pairwise comparisons"
    template_version = "1"
    Config = JudgeConfig
    default_params = {"temperature": 0.0, "max_tokens": 96}

    RATING_PROMPT = (
        "Evaluate the response to the instruction on {title}: {rubric}\n\n"
        "Instruction:\n{prompt}\n\nResponse:\n{response}\n\n"
        "Give a score from 1 (very poor) to 5 (excellent). Answer exactly in this format:\n"
        "Rating: <1-5>\nRationale: <one sentence>"
    )
    PAIRWISE_PROMPT = (
        "Which response follows the instruction better?\n\nInstruction:\n{prompt}\n\n"
        "Response A:\n{a}\n\nResponse B:\n{b}\n\n"
        "Answer exactly in this format:\nChoice: <A, B or tie>\nRationale: <one sentence>"
    )

    def responses_by_record(self):
        records = self.input_records()
        responses = Response.objects.filter(record__in=records, status="kept").order_by("id")
        if self.config.model_responses_only:
            responses = responses.filter(author_kind="model")
        grouped: dict[int, list[Response]] = {}
        for response in responses:
            grouped.setdefault(response.record_id, []).append(response)
        return [(record, grouped.get(record.pk, [])) for record in records]

    def run(self) -> dict:
        config = self.config
        work = self.responses_by_record()
        requests = []
        for record, responses in work:
            prompt = record.prompt if not record.context else f"{record.prompt}\n\n{record.context}"
            if config.mode in ("rating", "both"):
                for response in responses:
                    for aspect in config.aspects:
                        text = self.RATING_PROMPT.format(
                            title=aspect.replace("_", " "), rubric=ASPECTS[aspect], prompt=prompt,
                            response=response.text)
                        requests.append(self.request([{"role": "user", "content": text}],
                                                     tag=("rating", record, response, aspect)))
            if config.mode in ("pairwise", "both"):
                pairs = list(combinations(responses, 2))[: config.max_pairs_per_record]
                for first, second in pairs:
                    for swapped in (False, True):
                        shown = (second, first) if swapped else (first, second)
                        text = self.PAIRWISE_PROMPT.format(prompt=prompt, a=shown[0].text, b=shown[1].text)
                        requests.append(self.request([{"role": "user", "content": text}],
                                                     tag=("pairwise", record, (first, second), swapped)))
        total = len(requests)
        self.progress(0, total, "judging")
        done = 0
        for result in self.stream_requests(requests):
            done += 1
            if result.ok:
                kind = result.request.tag[0]
                if kind == "rating":
                    self._rating(result)
                else:
                    self._pairwise(result)
            self.progress(done, total, "judging")
        return {"judgements_requested": total}

    def _rating(self, result) -> None:
        _, record, response, aspect = result.request.tag
        try:
            value, rationale = parse_rating(result.text)
        except UnparseableReply as exc:
            self.discard("judge.rating", exc.reason, result.text, record=record, response=response.pk, aspect=aspect)
            return
        self.write_feedback(
            record, Feedback.Kind.RATING,
            {"response": response.pk, "value": value, "scale_min": 1, "scale_max": 5, "aspect": aspect,
             "rationale": rationale[:2000]},
            aspect=aspect, cached=result.cached,
        )

    def _pairwise(self, result) -> None:
        _, record, (first, second), swapped = result.request.tag
        try:
            shown_choice = parse_pairwise_choice(result.text)
        except UnparseableReply as exc:
            self.discard("judge.pairwise", exc.reason, result.text, record=record,
                         pair=[first.pk, second.pk], swapped=swapped)
            return
        choice = shown_choice
        if swapped and shown_choice != "tie":
            choice = "b" if shown_choice == "a" else "a"
        rationale = labelled_fields(result.text, ["rationale"]).get("rationale", "")
        self.write_feedback(
            record, Feedback.Kind.PAIRWISE, {"a": first.pk, "b": second.pk, "choice": choice},
            aspect="overall", swapped=swapped, shown=[s.pk for s in ((second, first) if swapped else (first, second))],
            rationale=rationale[:2000], cached=result.cached,
        )
