"""Self-Instruct (Wang et al. 2023): bootstrap new instructions from a few seed tasks.

Each request shows k in-context tasks (seed tasks plus some already generated, shuffled) and
asks for a new one. A candidate is kept only if it passes the paper's filters: 3 < words <= 150,
no keyword a text model cannot act on (image, graph, file, ...), does not start with "Write a
program", punctuation or a non-ASCII character, and its highest ROUGE-L F against the growing
pool (seeds included) is at most 0.7. Its 10 most similar pool entries are kept in provenance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import Field, field_validator

from corpus.models import Record

from ..parsing import numbered_items
from ..similarity import NoveltyPool
from .base import GenerationMethod, MethodConfig, register_method

SEED_FILE = Path(__file__).resolve().parent.parent / "data" / "self_instruct_seeds.jsonl"
# Self-Instruct's list plus Alpaca's additions.
BLOCKED_KEYWORDS = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                    "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
                    "diagram"]


def builtin_seed_tasks() -> list[str]:
    with open(SEED_FILE, encoding="utf-8") as handle:
        return [json.loads(line)["instruction"] for line in handle if line.strip()]


def read_seed_file(path: Path) -> list[str]:
    """Seed tasks from a .jsonl file (an "instruction" or "prompt" field per line) or a text
    file (one task a line)."""
    tasks = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if path.suffix in (".jsonl", ".json") and line.startswith("{"):
                row = json.loads(line)
                line = str(row.get("instruction") or row.get("prompt") or "").strip()
            if line:
                tasks.append(line)
    return tasks


def rejection_reason(text: str, *, min_words: int, max_words: int, blocked: list[str]) -> str | None:
    """Why an instruction fails Self-Instruct's length and keyword filters, or None."""
    words = text.split()
    if len(words) < min_words:
        return f"too short ({len(words)} words; at least {min_words})"
    if len(words) > max_words:
        return f"too long ({len(words)} words; at most {max_words})"
    lowered = text.lower()
    for keyword in blocked:
        if re.search(rf"\b{re.escape(keyword.lower())}\b", lowered):
            return f"mentions {keyword!r}, which a text-only model cannot act on"
    if lowered.startswith("write a program"):
        return "starts with 'Write a program'"
    if not text[0].isascii():
        return "starts with a non-ASCII character"
    if not text[0].isalnum():
        return "starts with punctuation"
    return None


class SelfInstructConfig(MethodConfig):
    num_instructions: int = Field(20, ge=1, le=100_000, description="How many new instructions to keep")
    seed_tasks: list[str] | None = Field(None, description="Your own seed tasks (default: the bundled set)")
    seed_dataset: int | None = Field(None, description="Use the prompts of this dataset as seed tasks")
    seed_examples: int = Field(3, ge=1, le=16, description="Seed tasks shown per request")
    generated_examples: int = Field(1, ge=0, le=16, description="Generated tasks shown per request")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="Keep only if max ROUGE-L F <= this")
    min_words: int = Field(4, ge=1)
    max_words: int = Field(150, ge=1)
    blocked_keywords: list[str] = Field(default_factory=lambda: list(BLOCKED_KEYWORDS))
    max_requests: int | None = Field(None, ge=1, description="Give up after this many (default 5x the target)")
    batch_size: int = Field(8, ge=1, le=1000, description="Requests sent together each round")

    @field_validator("seed_tasks")
    @classmethod
    def _enough_seeds(cls, value):
        if value is not None:
            value = [task.strip() for task in value if isinstance(task, str) and task.strip()]
            if not value:
                raise ValueError("give at least one non-empty seed task")
        return value


@register_method
class SelfInstruct(GenerationMethod):
    name = "self_instruct"
    title = "Self-Instruct: new instructions from seed tasks"
    template_version = "1"
    Config = SelfInstructConfig
    default_params = {"temperature": 0.7, "top_p": 0.5, "presence_penalty": 2.0, "max_tokens": 64}

    PROMPT = (
        "Come up with a new task instruction for an AI assistant. Here are some examples:\n\n"
        "{examples}\n\n"
        "Write ONE new task that is different from all the examples. Reply with the task "
        "instruction only, on a single line."
    )

    def seeds(self) -> tuple[list[str], str]:
        config = self.config
        if config.seed_tasks:
            return config.seed_tasks, "uploaded"
        if config.seed_dataset:
            prompts = list(Record.objects.filter(dataset_id=config.seed_dataset, status="kept")
                           .order_by("id").values_list("prompt", flat=True)[:10_000])
            if not prompts:
                from jobs.registry import JobFailed

                raise JobFailed(f"seed dataset {config.seed_dataset} has no kept records")
            return prompts, f"dataset:{config.seed_dataset}"
        return builtin_seed_tasks(), "builtin"

    def run(self) -> dict:
        config = self.config
        seeds, seed_set = self.seeds()
        pool = NoveltyPool()
        for task in seeds:
            pool.add(task)
        generated: list[str] = []
        budget = config.max_requests or 5 * config.num_instructions
        sent = 0
        self.progress(0, config.num_instructions, "self-instruct")
        while len(generated) < config.num_instructions and sent < budget:
            size = min(config.batch_size, budget - sent)
            requests = []
            for index in range(sent, sent + size):
                shown = self.rng.sample(seeds, min(config.seed_examples, len(seeds)))
                shown += self.rng.sample(generated, min(config.generated_examples, len(generated)))
                self.rng.shuffle(shown)
                examples = "\n".join(f"{i}. {task}" for i, task in enumerate(shown, 1))
                messages = [{"role": "user", "content": self.PROMPT.format(examples=examples)}]
                requests.append(self.request(messages, sample_index=index, tag=shown))
            sent += size
            for result in self.run_requests(requests):
                if not result.ok:
                    continue
                candidates = numbered_items(result.text)[:5]
                if not candidates:
                    self.discard("parse", "the reply holds no instruction", result.text)
                elif result.finish_reason == "length":
                    # The last item was cut off mid-sentence by max_tokens.
                    self.discard("filter", "cut off at max_tokens", candidates.pop())
                for candidate in candidates:
                    if len(generated) >= config.num_instructions:
                        break
                    self._consider(candidate.strip().strip('"'), result, pool, generated, seed_set)
            self.progress(len(generated), config.num_instructions, "self-instruct")
        if len(generated) < config.num_instructions:
            self.log(f"kept {len(generated)} of {config.num_instructions} instructions after "
                     f"{sent} requests (max_requests); the rest were filtered out", "warning")
        return {"instructions": len(generated), "requests": sent}

    def _consider(self, text: str, result, pool: NoveltyPool, generated: list[str], seed_set: str) -> None:
        config = self.config
        reason = rejection_reason(text, min_words=config.min_words, max_words=config.max_words,
                                  blocked=config.blocked_keywords)
        similar = pool.most_similar(text, top=10) if reason is None else []
        if reason is None and similar and similar[0][1] > config.rouge_threshold:
            reason = f"too similar to an existing instruction (ROUGE-L {similar[0][1]:.2f} > {config.rouge_threshold})"
        if reason:
            self.discard("filter", reason, text, most_similar=[[t, round(s, 4)] for t, s in similar[:3]])
            return
        pool.add(text)
        generated.append(text)
        self.write_record(
            prompt=text, params=result.request.params,
            seed_set=seed_set, in_context=result.request.tag,
            most_similar=[[t, round(s, 4)] for t, s in similar],
            sample_index=result.request.sample_index, cached=result.cached,
        )
