"""Evol-Instruct (WizardLM): rewrite instructions into harder (in-depth) or new (in-breadth)
ones, round after round, and eliminate failed evolutions.

Elimination rules (WizardLM section 3.2; neither WizardLM's repo nor distilabel implements them):
  1. no information gain: the evolved instruction is (nearly) the original (ROUGE-L F above
     `max_similarity`), or optionally the judge model says they are equal;
  2. the model failed to evolve: the response to the evolved instruction contains "sorry" and
     is under 80 words, or is only punctuation and stop words;
  3. the rewrite copied the prompt's wording ("given prompt", "rewritten prompt", ...).
A failed instruction goes back to the pool: the next round evolves its last good version.
Each kept evolution is a new Record whose provenance names its parent record and operation.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ..similarity import rouge_l, rouge_tokens
from .base import GenerationMethod, RecordInputConfig, register_method

IN_DEPTH = {
    "add_constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "If the prompt asks about a certain issue, increase the depth and breadth of the inquiry.",
    "concretize": "Replace general concepts in the prompt with more specific ones.",
    "increase_reasoning": "If the prompt can be solved with a few simple steps, rewrite it to explicitly "
                          "request multi-step reasoning.",
}
DEPTH_TEMPLATE = (
    "I want you to act as a Prompt Rewriter. Rewrite the given prompt into a more complex version "
    "that a person can still understand and answer. {method} The rewritten prompt may add only 10 "
    "to 20 words to the given prompt. Do not use the words 'given prompt' or 'rewritten prompt'.\n\n"
    "Prompt: {prompt}\n\nReply with the rewritten prompt only."
)
BREADTH_TEMPLATE = (
    "I want you to act as a Prompt Creator. Draw inspiration from the prompt below to create a brand "
    "new prompt in the same domain but on a rarer topic, of similar length and difficulty. Do not "
    "use the words 'given prompt' or 'created prompt'.\n\nPrompt: {prompt}\n\nReply with the new prompt only."
)
EQUALITY_TEMPLATE = (
    "Here are two instructions. Do they have the same constraints and requirements, and the same "
    "depth and breadth of inquiry?\n\nFirst: {a}\n\nSecond: {b}\n\nAnswer 'Equal' or 'Not Equal'."
)
COPIED_PHRASES = ("given prompt", "rewritten prompt", "#given prompt#", "#rewritten prompt#", "created prompt",
                  "#created prompt#", "prompt rewriter", "prompt creator")
STOP_WORDS = set("""a an the and or but if then so of to in on at by for with about as is are was were be
been being it its this that these those i you he she we they me him her us them my your our their
not no yes do does did have has had can could would should will shall may might must just very""".split())


def copied_prompt_text(text: str) -> str | None:
    lowered = text.lower()
    for phrase in COPIED_PHRASES:
        if phrase in lowered:
            return phrase
    return None


def failed_response(text: str) -> str | None:
    words = text.split()
    if "sorry" in text.lower() and len(words) < 80:
        return "the model could not answer it (contains 'sorry', under 80 words)"
    content = [w for w in rouge_tokens(text) if w not in STOP_WORDS]
    if not content:
        return "the answer is only punctuation and stop words"
    return None


class EvolInstructConfig(RecordInputConfig):
    rounds: int = Field(1, ge=1, le=10, description="Evolutions applied one after another")
    operations: list[str] = Field(default_factory=lambda: [*IN_DEPTH, "breadth"])
    max_similarity: float = Field(0.9, gt=0, le=1, description="ROUGE-L F above this = no information gain")
    equality_check: Literal["rouge", "llm"] = Field("rouge", description="How to detect no information gain")
    check_response: bool = Field(True, description="Answer each evolution and eliminate ones the model fails")
    response_max_tokens: int = Field(128, ge=1, le=8192)

    @field_validator("operations")
    @classmethod
    def _operations(cls, value):
        allowed = [*IN_DEPTH, "breadth"]
        if not value:
            raise ValueError("give at least one operation")
        unknown = [op for op in value if op not in allowed]
        if unknown:
            raise ValueError(f"unknown operation {unknown[0]!r}; one of {', '.join(allowed)}")
        return value


@register_method
class EvolInstruct(GenerationMethod):
    name = "evol_instruct"
    title = "Evol-Instruct: harder and broader instructions"
    template_version = "1"
    Config = EvolInstructConfig
    default_params = {"temperature": 0.7, "max_tokens": 128}

    def run(self) -> dict:
        config = self.config
        sources = self.input_records()
        # Each lineage: the original record, its current (last good) version, and that version's record.
        lineages = [{"origin": r, "text": r.prompt, "record": r} for r in sources]
        total = len(lineages) * config.rounds
        kept = done = 0
        self.progress(0, total, "evolving")
        for round_no in range(1, config.rounds + 1):
            ops = [self.rng.choice(config.operations) for _ in lineages]
            rewrites = self.run_requests([
                self.request([{"role": "user", "content": self._prompt(op, line["text"])}],
                             sample_index=round_no, tag=(line, op))
                for line, op in zip(lineages, ops)
            ])
            candidates = []
            for result in rewrites:
                line, op = result.request.tag
                if not result.ok:
                    continue
                evolved = result.text.strip().strip('"').strip()
                evolved = re.sub(r"^(rewritten|new|created)?\s*prompt\s*:\s*", "", evolved, flags=re.I).strip()
                reason = self._static_elimination(line["text"], evolved)
                if reason:
                    self.discard("evolution", reason, evolved, record=line["record"], operation=op, round=round_no)
                    continue
                candidates.append((line, op, evolved, result))
            candidates = self._llm_equality(candidates, round_no)
            answers = {}
            if config.check_response and candidates:
                replies = self.run_requests([
                    self.request([{"role": "user", "content": evolved}], sample_index=round_no,
                                 tag=id(line), max_tokens=config.response_max_tokens)
                    for line, op, evolved, _ in candidates
                ])
                answers = {reply.request.tag: reply for reply in replies}
            for line, op, evolved, result in candidates:
                answer = answers.get(id(line))
                if answer is not None:
                    if not answer.ok:
                        continue
                    reason = failed_response(answer.text)
                    if reason:
                        self.discard("evolution", reason, evolved, record=line["record"], operation=op,
                                     round=round_no, answer=answer.text)
                        continue
                record = self.write_record(
                    prompt=evolved, parent=line["record"], params=result.request.params,
                    evolution=op, kind="in-breadth" if op == "breadth" else "in-depth", round=round_no,
                    origin_record=line["origin"].pk,
                )
                if answer is not None:
                    self.write_response(record, answer.text.strip(), params=answer.request.params)
                line["text"], line["record"] = evolved, record
                kept += 1
            done += len(lineages)
            self.progress(done, total, f"round {round_no} of {config.rounds}")
        return {"evolved": kept}

    def _prompt(self, op: str, text: str) -> str:
        if op == "breadth":
            return BREADTH_TEMPLATE.format(prompt=text)
        return DEPTH_TEMPLATE.format(method=IN_DEPTH[op], prompt=text)

    def _static_elimination(self, original: str, evolved: str) -> str | None:
        if not evolved:
            return "the model failed to evolve it: empty rewrite"
        phrase = copied_prompt_text(evolved)
        if phrase:
            return f"copied the prompt's wording ({phrase!r})"
        similarity = rouge_l(rouge_tokens(evolved), rouge_tokens(original))
        if similarity > self.config.max_similarity:
            return f"no information gain (ROUGE-L {similarity:.2f} to the original)"
        return None

    def _llm_equality(self, candidates, round_no):
        if self.config.equality_check != "llm" or not candidates:
            return candidates
        verdicts = self.run_requests([
            self.request([{"role": "user", "content": EQUALITY_TEMPLATE.format(a=line["text"], b=evolved)}],
                         sample_index=round_no, temperature=0.0, max_tokens=8)
            for line, _, evolved, _ in candidates
        ])
        kept = []
        for candidate, verdict in zip(candidates, verdicts):
            text = (verdict.text or "").strip().lower()
            if verdict.ok and text.startswith("equal"):
                line, op, evolved, _ = candidate
                self.discard("evolution", "no information gain (the judge found it equal)", evolved,
                             record=line["record"], operation=op, round=round_no)
            else:
                kept.append(candidate)
        return kept
