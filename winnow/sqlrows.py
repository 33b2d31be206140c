"""Hand-written SQL for the hottest requests, read back into ordinary model instances.

Building and compiling an ORM query costs 0.3-1.5 ms of CPU on a small machine (a
select_related with a sub-select is the dearest); sending finished SQL and reading its row
costs under 0.1 ms. The annotation queue answers two requests per judgement, each of which
used to make ~10 ORM queries, so its fixed-shape statements (and the token sign-in every API
request pays for) are written out, each built once per process. The columns still come from
the models' `_meta` and the values go through the fields' own conversions in both directions,
so what comes back is what the ORM would have built (JSON decoded, SQLite booleans and
datetimes converted, ...).

    MEMBER = Columns(ProjectMember)
    sql = f"SELECT {MEMBER.select('m')} FROM {table(ProjectMember)} m WHERE m.id = %s"
    member = MEMBER.load(fetch_one(sql, [pk]))

Statements use %s placeholders on every backend (Django's SQLite cursor translates them), so
a literal % must be written %%.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS, connections


def db():
    """The default connection itself (django.db.connection is a proxy that looks it up on
    every attribute access)."""
    return connections[DEFAULT_DB_ALIAS]


def qn(name: str) -> str:
    return db().ops.quote_name(name)


def table(model) -> str:
    return qn(model._meta.db_table)


def column(model, field_name: str) -> str:
    return qn(model._meta.get_field(field_name).column)


class Columns:
    """A model's columns (all concrete fields, or `fields` and the primary key) in a select
    list, and rows read back into instances; fields left out are deferred, as with `.only()`."""

    def __init__(self, model, fields: Iterable[str] | None = None):
        wanted = None if fields is None else set(fields)
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields
                       if wanted is None or f.name in wanted or f.attname in wanted or f.primary_key]
        self.attnames = [f.attname for f in self.fields]
        self.width = len(self.fields)
        self._select: dict[tuple[str, str], str] = {}
        self._converters: dict[str, list] = {}

    def select(self, alias: str) -> str:
        key = (db().vendor, alias)
        found = self._select.get(key)
        if found is None:
            found = self._select[key] = ", ".join(f"{alias}.{qn(f.column)}" for f in self.fields)
        return found

    def _converters_for(self, conn) -> list:
        # What SQLCompiler.get_converters applies: the backend's converters, then the field's.
        found = self._converters.get(conn.alias)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self.model._meta.db_table)
                functions = conn.ops.get_db_converters(col) + field.get_db_converters(conn)
                if functions:
                    found.append((index, functions, col))
            self._converters[conn.alias] = found
        return found

    def load(self, row: Sequence, start: int = 0, conn=None):
        conn = conn or db()
        values = list(row[start:start + self.width])
        for index, functions, col in self._converters_for(conn):
            value = values[index]
            for convert in functions:
                value = convert(value, col, conn)
            values[index] = value
        return self.model.from_db(conn.alias, self.attnames, values)


def fetch_one(sql: str, params: Sequence = ()) -> tuple | None:
    with db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetch_all(sql: str, params: Sequence = ()) -> list[tuple]:
    with db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: Sequence = ()) -> int:
    """Runs a write; returns the number of rows it changed."""
    with db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def refresh_statistics(*models) -> None:
    """ANALYZE the models' tables on PostgreSQL, after a bulk write the next queries depend on.

    Autovacuum analyzes a table only a while after enough rows changed, and until then the
    planner works from the statistics of the empty table: the annotation queue's claim over a
    freshly built project was planned as "1 candidate row", a bitmap scan that joined and
    sorted every open item (22 ms a claim at 2,500 items, growing with the project) instead of
    reading the queue index in order and stopping at the first row (0.13 ms). SQLite's planner
    keeps no such statistics by default: nothing to do there."""
    conn = db()
    if conn.vendor != "postgresql":
        return
    with conn.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(table(model) for model in models)}")
