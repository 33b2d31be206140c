"""Chain-of-thought distillation (Distilling step-by-step; self-consistency).

For each record the teacher writes k step-by-step rationales ending with an explicit marker
("So the answer is ..."). A rationale is kept when its final answer matches the record's
reference answer (metadata key `reference_key`, rejection sampling), or, without one, the
majority answer of the k samples (self-consistency). Kept rationales are Responses whose
provenance holds the extracted answer and how it was verified; the rest are discards.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from .base import GenerationMethod, RecordInputConfig, register_method

PROMPT = ("{question}\n\nThink step by step, then finish with one line of the form "
          "\"{marker} <answer>.\"")


def normalize_answer(text: str) -> str:
    text = text.strip().lower().strip(" .!\"'*")
    text = re.sub(r"^(the answer is|answer:)\s*", "", text)
    number = re.fullmatch(r"[-+]?\$?\s*([\d,]*\.?\d+)\s*[a-z%]*", text)
    if number:
        value = float(number.group(1).replace(",", ""))
        return str(int(value)) if value.is_integer() else str(value)
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text)).strip()


def extract_answer(text: str, marker: str) -> str | None:
    """The answer after the last marker (case-insensitive), up to the end of its line."""
    index = text.lower().rfind(marker.lower())
    if index < 0:
        return None
    answer = text[index + len(marker):].strip().lstrip(":").strip()
    answer = answer.splitlines()[0] if answer else ""
    return answer.strip() or None


class CoTConfig(RecordInputConfig):
    k: int = Field(3, ge=1, le=64, description="Rationales sampled per question")
    marker: str = Field("So the answer is", min_length=2, max_length=100)
    reference_key: str = Field("answer", description="Record metadata key holding the reference answer")
    min_agreement: int = Field(2, ge=1, description="Without a reference: votes the majority answer needs")


@register_method
class CoTDistillation(GenerationMethod):
    name = "cot"
    title = "Chain-of-thought distillation with self-consistency"
    template_version = "1"
    Config = CoTConfig
    default_params = {"temperature": 0.7, "max_tokens": 256}

    def run(self) -> dict:
        config = self.config
        records = self.input_records()
        requests = [
            self.request([{"role": "user", "content": PROMPT.format(question=r.prompt if not r.context else
                                                                    f"{r.prompt}\n\n{r.context}", marker=config.marker)}],
                         sample_index=i, tag=r)
            for r in records for i in range(config.k)
        ]
        by_record: dict[int, list] = {}
        self.progress(0, len(records), "sampling rationales")
        for result in self.run_requests(requests):
            if result.ok:
                by_record.setdefault(result.request.tag.pk, []).append(result)
        kept = 0
        for done, record in enumerate(records, 1):
            kept += self._verify(record, by_record.get(record.pk, []))
            self.progress(done, len(records), "verifying")
        return {"rationales_kept": kept}

    def _verify(self, record, results) -> int:
        config = self.config
        answered = []
        for result in results:
            answer = extract_answer(result.text, config.marker)
            if answer is None:
                self.discard("cot", f"no final answer (missing {config.marker!r})", result.text, record=record)
            else:
                answered.append((result, answer, normalize_answer(answer)))
        reference = record.metadata.get(config.reference_key) if isinstance(record.metadata, dict) else None
        if reference not in (None, ""):
            target, verified_by = normalize_answer(str(reference)), "reference"
        else:
            votes = Counter(norm for _, _, norm in answered)
            top = votes.most_common(2)
            if not top or top[0][1] < config.min_agreement or (len(top) > 1 and top[0][1] == top[1][1]):
                for result, answer, _ in answered:
                    self.discard("cot", "no majority answer among the samples", result.text, record=record,
                                 answer=answer, votes=dict(votes))
                return 0
            target, verified_by = top[0][0], "majority"
        kept = 0
        for result, answer, norm in answered:
            if norm != target:
                self.discard("cot", f"answer {answer!r} disagrees with the {verified_by} answer", result.text,
                             record=record, answer=answer)
                continue
            self.write_response(record, result.text.strip(), params=result.request.params,
                                sample_index=result.request.sample_index, answer=answer,
                                verified_by=verified_by, votes=sum(1 for *_, n in answered if n == target),
                                samples=len(results))
            kept += 1
        return kept
