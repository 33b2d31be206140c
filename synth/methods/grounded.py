"""Grounded generation from documents: split domain text into chunks, and ask for
question/answer (or instruction/response) pairs that the chunk alone supports. Each pair is a
Record (the chunk kept as its context) with one Response; provenance names the document and
chunk. Documents come from the config (uploaded text) or from the dataset's `text` records.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from corpus.models import Record

from ..parsing import UnparseableReply, parse_fields
from .base import GenerationMethod, MethodConfig, register_method

PROMPTS = {
    "qa": ("Read the text and write one question that the text answers, and its answer, using only "
           "the text.\n\nText:\n{chunk}\n\nReply as JSON: {{\"question\": \"...\", \"answer\": \"...\"}}"),
    "instruction": ("Read the text and write one task instruction that can be completed using only the "
                    "text, and a good response.\n\nText:\n{chunk}\n\n"
                    "Reply as JSON: {{\"instruction\": \"...\", \"response\": \"...\"}}"),
}
FIELDS = {"qa": ["question", "answer"], "instruction": ["instruction", "response"]}


def split_into_chunks(text: str, *, chunk_words: int, overlap_words: int) -> list[str]:
    """Word windows of `chunk_words` with `overlap_words` shared between neighbours, cut at
    paragraph breaks when one is near (so a chunk rarely starts mid-paragraph)."""
    paragraphs = [p.split() for p in text.split("\n\n") if p.strip()]
    words, breaks = [], set()
    for paragraph in paragraphs:
        breaks.add(len(words))
        words.extend(paragraph)
    chunks, start = [], 0
    while start < len(words):
        end = min(len(words), start + chunk_words)
        if end < len(words):
            near = [b for b in breaks if start + chunk_words // 2 < b <= end]
            if near:
                end = max(near)
        chunks.append(" ".join(words[start:end]))
        if end >= len(words):
            break
        start = max(start + 1, end - overlap_words)
    return chunks


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = ""
    text: str = Field(min_length=1)


class GroundedConfig(MethodConfig):
    documents: list[Document] | None = Field(None, description="Uploaded documents (default: the dataset's text records)")
    source_dataset: int | None = None
    style: Literal["qa", "instruction"] = "qa"
    pairs_per_chunk: int = Field(1, ge=1, le=20)
    chunk_words: int = Field(200, ge=20, le=5000)
    overlap_words: int = Field(20, ge=0)
    max_chunks: int | None = Field(None, ge=1)


@register_method
class GroundedGeneration(GenerationMethod):
    name = "grounded"
    title = "Grounded Q&A and instructions from documents"
    template_version = "1"
    Config = GroundedConfig
    default_params = {"temperature": 0.7, "max_tokens": 192}

    def documents(self) -> list[tuple[str, int | None, str]]:
        """(title, source record id, text) for each document."""
        if self.config.documents:
            return [(d.title or f"document {i + 1}", None, d.text) for i, d in enumerate(self.config.documents)]
        dataset_id = self.config.source_dataset or self.generation.dataset_id
        records = Record.objects.filter(dataset_id=dataset_id, kind=Record.Kind.TEXT, status="kept").order_by("id")
        return [(r.metadata.get("title", f"record {r.pk}") if isinstance(r.metadata, dict) else f"record {r.pk}", r.pk, r.prompt)
                for r in records]

    def run(self) -> dict:
        config = self.config
        chunks = []
        for title, record_id, text in self.documents():
            for index, chunk in enumerate(split_into_chunks(text, chunk_words=config.chunk_words,
                                                            overlap_words=min(config.overlap_words, config.chunk_words - 1))):
                chunks.append({"title": title, "record": record_id, "index": index, "text": chunk})
        if not chunks:
            from jobs.registry import JobFailed

            raise JobFailed("no documents: upload some in config.documents or import text records into the dataset")
        chunks = chunks[: config.max_chunks] if config.max_chunks else chunks
        requests = [
            self.request([{"role": "user", "content": PROMPTS[config.style].format(chunk=chunk["text"])}],
                         sample_index=n, json_mode=True, tag=chunk)
            for chunk in chunks for n in range(config.pairs_per_chunk)
        ]
        names = FIELDS[config.style]
        written = done = 0
        self.progress(0, len(requests), "generating")
        for result in self.stream_requests(requests):
            done += 1
            chunk = result.request.tag
            if result.ok:
                try:
                    fields = parse_fields(result.text, names)
                except UnparseableReply as exc:
                    self.discard("grounded", exc.reason, result.text, chunk=chunk["index"], document=chunk["title"])
                else:
                    parent = Record.objects.filter(pk=chunk["record"]).first() if chunk["record"] else None
                    record = self.write_record(
                        prompt=fields[names[0]], context=chunk["text"], parent=parent, params=result.request.params,
                        metadata={"document": chunk["title"], "chunk": chunk["index"]},
                        document=chunk["title"], chunk=chunk["index"], style=config.style,
                    )
                    self.write_response(record, fields[names[1]], params=result.request.params, grounded=True)
                    written += 1
            self.progress(done, len(requests), "generating")
        return {"chunks": len(chunks), "pairs": written}
