"""Records with their responses and usable feedback, read from the database in chunks.

Records come through one ordered query read with `.iterator()` (a server-side cursor on
PostgreSQL, fetchmany batches on SQLite); for each chunk of records, their responses and
feedback come in two more queries served by the (record, id) and (record, kind) indexes.
Memory stays at one chunk whatever the dataset's size.

Feedback is cleaned here, once, for every builder (the contracts of docs/snapshots.md):
rows a manager excluded are skipped; gold rows are skipped unless the recipe includes gold;
where a reviewer gave the `final` answer for an item and question, only that answer counts;
then the recipe's annotator and human/model filters apply.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from django.db import connection, transaction
from django.db.models import Q, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from ..models import Feedback, Record
from .recipe import Recipe

CHUNK_SIZE = 2000


@dataclass(slots=True)
class ResponseItem:
    id: int
    text: str
    author_kind: str
    model_name: str
    edited_from: int | None


@dataclass(slots=True)
class FeedbackItem:
    id: int
    kind: str
    payload: dict
    author_kind: str
    author_id: int | None
    model_name: str
    provenance: dict

    @property
    def voter(self) -> str:
        """Who judged: one vote per person or model on an item."""
        if self.author_kind == "model":
            return f"model:{self.model_name}"
        return f"user:{self.author_id}" if self.author_id is not None else f"feedback:{self.id}"


@dataclass(slots=True)
class RecordItem:
    id: int
    kind: str
    prompt: str
    context: str
    history: list
    metadata: dict
    source: str
    dup_cluster: str
    responses: dict[int, ResponseItem] = field(default_factory=dict)
    feedback: list[FeedbackItem] = field(default_factory=list)

    def messages(self, system_prompt: str | None = None) -> list[dict]:
        content = self.prompt if not self.context else f"{self.prompt}\n\n{self.context}"
        turns = [{"role": m["role"], "content": m["content"]} for m in self.history]
        if system_prompt and not (turns and turns[0]["role"] == "system"):
            turns.insert(0, {"role": "system", "content": system_prompt})
        return [*turns, {"role": "user", "content": content}]


@dataclass
class StreamStats:
    records: int = 0
    responses: int = 0
    feedback_read: int = 0
    feedback_used: int = 0
    skipped_feedback: dict = field(default_factory=lambda: defaultdict(int))


class RecordStream:
    """Iterates RecordItems for a recipe. `feedback_kinds` limits the feedback read (None:
    none at all, e.g. for text snapshots)."""

    def __init__(self, recipe: Recipe, *, feedback_kinds: tuple[str, ...] | None,
                 excluded_author_ids: set[int] | None = None, chunk_size: int = CHUNK_SIZE,
                 id_range: tuple[int | None, int | None] = (None, None)):
        self.recipe = recipe
        self.id_range = id_range  # [low, high): one part of a parallel build
        self.feedback_kinds = feedback_kinds
        self.excluded_author_ids = excluded_author_ids or set()
        self.chunk_size = chunk_size
        self.stats = StreamStats()

    def record_queryset(self):
        filters = self.recipe.filters
        records = Record.objects.filter(dataset_id__in=self.recipe.dataset_ids)
        low, high = self.id_range
        if low is not None:
            records = records.filter(id__gte=low)
        if high is not None:
            records = records.filter(id__lt=high)
        if filters["status"] != "any":
            records = records.filter(status=filters["status"])
        if filters["created_after"]:
            records = records.filter(created_at__gte=_aware(filters["created_after"]))
        if filters["created_before"]:
            records = records.filter(created_at__lt=_aware(filters["created_before"]))
        for index, (key, value) in enumerate(filters["metadata"].items()):
            alias = f"_meta_{index}"
            as_text = Cast(KeyTextTransform(key, "metadata"), output_field=TextField())
            if isinstance(value, bool):  # JSON spells them lower-case
                value = "true" if value else "false"
            records = records.annotate(**{alias: as_text}).filter(**{alias: str(value)})
        return records.order_by("id")

    def count(self) -> int:
        return self.record_queryset().count()

    def __iter__(self) -> Iterator[RecordItem]:
        """Three ordered queries (records by id; their responses and feedback by record id)
        read side by side and merged, like a merge join: no per-chunk IN lists to build."""
        records_sql, record_params = self.record_queryset().values_list(
            "id", "kind", "prompt", "context", "history", "metadata", "source", "dup_cluster"
        ).query.sql_with_params()
        ids_sql, id_params = self.record_queryset().order_by().values("id").query.sql_with_params()
        status = self.recipe.filters["status"]
        response_sql = (
            "SELECT id, record_id, text, author_kind, model_name, edited_from_id "
            f"FROM corpus_response WHERE record_id IN ({ids_sql})"
            + (" AND status = %s" if status != "any" else "")
            + " ORDER BY record_id, id"
        )
        response_params = [*id_params, *([status] if status != "any" else [])]
        queries = [(records_sql, record_params), (response_sql, response_params)]
        if self.feedback_kinds:
            marks = ", ".join(["%s"] * len(self.feedback_kinds))
            queries.append((
                "SELECT id, record_id, kind, payload, author_kind, author_id, model_name, provenance "
                f"FROM corpus_feedback WHERE record_id IN ({ids_sql}) AND kind IN ({marks}) "
                "ORDER BY record_id, id",
                [*id_params, *self.feedback_kinds],
            ))
        with _reading():
            streams = [_rows(sql, params, f"snapshot_{index}", self.chunk_size)
                       for index, (sql, params) in enumerate(queries)]
            yield from self._merge(*streams) if len(streams) == 3 else self._merge(streams[0], streams[1], iter(()))

    def _merge(self, records, responses, feedback) -> Iterator[RecordItem]:
        stats = self.stats
        response = next(responses, None)
        fb = next(feedback, None)
        for rid, kind, prompt, context, history, metadata, source, dup_cluster in records:
            item = RecordItem(rid, kind, prompt, context, _json(history), _json(metadata), source,
                              dup_cluster)
            while response is not None and response[1] <= rid:
                if response[1] == rid:
                    item.responses[response[0]] = ResponseItem(
                        response[0], response[2], response[3], response[4], response[5])
                    stats.responses += 1
                response = next(responses, None)
            rows = []
            while fb is not None and fb[1] <= rid:
                if fb[1] == rid:
                    rows.append(FeedbackItem(fb[0], fb[2], _json(fb[3]), fb[4], fb[5], fb[6],
                                             _json(fb[7]) or {}))
                fb = next(feedback, None)
            stats.records += 1
            if rows:
                stats.feedback_read += len(rows)
                item.feedback = self.usable_feedback(rows)
                stats.feedback_used += len(item.feedback)
            yield item

    def usable_feedback(self, rows: list[FeedbackItem]) -> list[FeedbackItem]:
        filters = self.recipe.filters
        if (filters["feedback_source"] == "both" and not self.excluded_author_ids
                and not any(row.provenance for row in rows)):
            return rows  # imported or plain rows: nothing to sort out
        skipped = self.stats.skipped_feedback
        kept = []
        for row in rows:
            if row.provenance.get("excluded"):
                skipped["excluded by a manager"] += 1
            elif row.provenance.get("gold") and not filters["include_gold"]:
                skipped["gold item"] += 1
            else:
                kept.append(row)
        finals = {_question_key(row) for row in kept if row.provenance.get("final")}
        if finals:
            superseded = [r for r in kept if _question_key(r) in finals and not r.provenance.get("final")]
            skipped["superseded by the reviewer's final answer"] += len(superseded)
            kept = [r for r in kept if not (_question_key(r) in finals and not r.provenance.get("final"))]
        source = filters["feedback_source"]
        out = []
        for row in kept:
            if source != "both" and row.author_kind != source:
                skipped[f"not {source} feedback"] += 1
            elif row.author_id is not None and row.author_id in self.excluded_author_ids:
                skipped["excluded annotator"] += 1
            else:
                out.append(row)
        return out


def _json(value):
    """JSON columns arrive as text (SQLite, and Django's psycopg loader) or parsed."""
    if value is None or isinstance(value, (dict, list)):
        return value
    return orjson.loads(value)


@contextmanager
def _reading():
    """On PostgreSQL, one transaction around the read: a consistent view of the data, and
    named cursors that stream without being materialised WITH HOLD. (On SQLite a transaction
    would take the write lock: Winnow's SQLite begins IMMEDIATE.)"""
    if connection.vendor == "postgresql":
        with transaction.atomic():
            yield
    else:
        yield


def _rows(sql: str, params, name: str, chunk_size: int) -> Iterator[tuple]:
    """Rows of a query in batches: a server-side (named) cursor on PostgreSQL."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        cursor = connection.connection.cursor(name=name)
        cursor.itersize = chunk_size
    else:
        cursor = connection.cursor()  # Django's wrapper turns %s into SQLite's ?
    try:
        cursor.execute(sql, list(params))
        while True:
            batch = cursor.fetchmany(chunk_size)
            if not batch:
                return
            yield from batch
    finally:
        cursor.close()


def _aware(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.timezone.utc)


def _question_key(row: FeedbackItem):
    p = row.provenance
    if "item" not in p:
        return ("feedback", row.id)  # not from an annotation project: stands alone
    return (p.get("annotation_project"), p.get("item"), p.get("question"))


def has_signal(recipe: Recipe, kinds: tuple[str, ...]) -> bool:
    """Whether the recipe's datasets hold any feedback of these kinds (a cheap EXISTS)."""
    query = Q(record__dataset_id__in=recipe.dataset_ids, kind__in=kinds)
    return Feedback.objects.filter(query).exists()
