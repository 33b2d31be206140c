"""Fast multi-row INSERTs for the import hot path.

bulk_create spends most of its time compiling SQL: on SQLite its 999-parameter cap splits a
2,000-row batch of 12 columns into 25 statements, each built value by value (profiled: ~70% of
an import went there, SQL execution ~7%). Here the statements are built once per table: on
SQLite a multi-row INSERT of up to ROWS_PER_STATEMENT rows (fewer statement executions than
executemany's one per row: 200k records with their responses written in 1.6 s instead of 2.3 s);
on PostgreSQL the rows go through COPY, its bulk-load path.
Columns come from the model's _meta, so a renamed field fails loudly instead of drifting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache

import orjson
from django.db import connection, models
from django.utils import timezone


def as_json(value) -> str:
    """A JSON field's value as the text RowInserter expects."""
    return orjson.dumps(value).decode()


ROWS_PER_STATEMENT = 100  # 50-1,000 measured alike; fewer rows leave per-statement cost


class RowInserter:
    """INSERT rows of `model` given as tuples in the order of `fields`.

    JSON fields take text (see as_json), so callers serialise while building their tuples
    rather than paying for a second pass here; auto_now/auto_now_add fields are filled in.
    """

    def __init__(self, model: type[models.Model], fields: Sequence[str]):
        meta = model._meta
        self.fields = [meta.get_field(name) for name in fields]
        self.stamped = [
            f for f in meta.concrete_fields
            if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add)
        ]
        columns = [f.column for f in self.fields + self.stamped]
        quote = connection.ops.quote_name
        self.copy_sql = (
            f"COPY {quote(meta.db_table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
        )
        # SQLite's statements go to its own connection, in its "?" style: Django's cursor would
        # rewrite every %s of a 1,300-parameter statement on each execution.
        self.head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(c) for c in columns)}) VALUES "
        self.row_sql = f"({', '.join(['?'] * len(columns))})"
        self.width = len(columns)

    @cache
    def sql(self, rows: int) -> str:
        """The INSERT of `rows` rows (built once per row count: the full chunk and the last)."""
        return self.head + ", ".join([self.row_sql] * rows)

    def _chunk_rows(self, raw) -> int:
        # SQLite caps the parameters of one statement (32,766 since 3.32, 999 before).
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(raw, "getlimit") else 999
        return max(1, min(ROWS_PER_STATEMENT, limit // self.width))

    def insert(self, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        stamps = (now,) * len(self.stamped)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # COPY, not executemany: 200k records imported at 14.0k/s instead of 4.1k/s
                # (bench/import_bench.py on the 2-core development machine).
                with cursor.cursor.copy(self.copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row + stamps)
            else:
                raw = connection.connection  # sqlite3's own connection, in Django's transaction
                step = self._chunk_rows(raw)
                for start in range(0, len(rows), step):
                    part = rows[start:start + step]
                    raw.execute(self.sql(len(part)), [value for row in part for value in (*row, *stamps)])


def last_ids(model: type[models.Model], count: int, **where) -> list[int]:
    """Ids of the `count` newest rows matching `where`, oldest first.

    Called right after inserting those rows in the same transaction, by the only writer of
    rows with that `where` (one attempt of one job): ids grow in insertion order on SQLite
    (rowid) and PostgreSQL (a sequence), so these are the new rows in the order given.
    """
    ids = list(
        model.objects.filter(**where).order_by("-pk").values_list("pk", flat=True)[:count]
    )
    ids.reverse()
    return ids
