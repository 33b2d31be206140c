"""The queue's hot statements as hand-written SQL (see winnow.sqlrows for why).

Each `next` and `submit` used to build ~10 ORM queries, and compiling them was most of the CPU
a request cost (the claim's select_related with two sub-selects alone ~1.4 ms). The statements
here are the SQL the ORM produced, written once and built once per process: same filters,
same order, same locks (FOR UPDATE ... SKIP LOCKED on PostgreSQL; none on SQLite, whose
IMMEDIATE transactions already run one writer at a time). Rows come back as the usual model
instances. Everything else in the app stays on the ORM.
"""

from __future__ import annotations

from functools import cache

from corpus.models import Record, Response
from winnow.sqlrows import Columns, column, db, execute, fetch_all, fetch_one, placeholders, qn, table

from .models import AnnotationProject, Assignment, Item, ProjectMember

MEMBER = Columns(ProjectMember)
PROJECT = Columns(AnnotationProject)
ASSIGNMENT = Columns(Assignment)
# What the queue reads of an item (gold answers are for the gold pages only) and what the
# workbench shows of its record (annotate.api.item_payload); other fields load on first use.
ITEM = Columns(Item, ["id", "project", "record", "response_ids", "claimed", "submitted", "is_gold"])
RECORD = Columns(Record, ["id", "kind", "prompt", "context", "history", "metadata"])


@cache
def _member_sql(vendor: str) -> str:
    m, p = "m", "p"
    return (
        f"SELECT {MEMBER.select(m)}, {PROJECT.select(p)} FROM {table(ProjectMember)} {m}"
        f" INNER JOIN {table(AnnotationProject)} {p}"
        f" ON {p}.{column(AnnotationProject, 'id')} = {m}.{column(ProjectMember, 'project')}"
        f" WHERE {m}.{column(ProjectMember, 'project')} = %s AND {m}.{column(ProjectMember, 'user')} = %s"
    )


def member_with_project(project_id: int, user_id: int) -> ProjectMember | None:
    """The user's membership of the project with the project loaded on it; None when the user
    is not a member."""
    conn = db()
    row = fetch_one(_member_sql(conn.vendor), [project_id, user_id])
    if row is None:
        return None
    member = MEMBER.load(row, 0, conn)
    member.project = PROJECT.load(row, MEMBER.width, conn)
    return member


@cache
def _live_lease_sql(vendor: str, holding: int) -> str:
    a = "a"
    not_held = f" AND NOT ({a}.{column(Assignment, 'item')} IN ({placeholders(holding)}))" if holding else ""
    return (
        f"SELECT {a}.{column(Assignment, 'id')} FROM {table(Assignment)} {a}"
        f" WHERE {a}.{column(Assignment, 'project')} = %s AND {a}.{column(Assignment, 'annotator')} = %s"
        f" AND {a}.{column(Assignment, 'status')} = %s AND {a}.{column(Assignment, 'expires_at')} > %s{not_held}"
        f" ORDER BY {a}.{column(Assignment, 'id')} ASC LIMIT 1"
    )


def live_lease_id(project_id: int, user_id: int, now, holding: tuple[int, ...]) -> int | None:
    """The oldest live lease the user holds in the project on an item not in `holding`."""
    conn = db()
    row = fetch_one(_live_lease_sql(conn.vendor, len(holding)),
                    [project_id, user_id, Assignment.Status.LEASED,
                     conn.ops.adapt_datetimefield_value(now), *holding])
    return row[0] if row else None


@cache
def _claim_sql(vendor: str, gold: bool, skip_locked: bool) -> str:
    i, r, a, x = "i", "r", "a", "x"
    # gold items are shown to everyone; overlap is for the real work
    room = "" if gold else f" AND {i}.{column(Item, 'claimed')} < %s"
    lock = f" FOR UPDATE OF {i} SKIP LOCKED" if skip_locked else ""
    return (
        f"SELECT {ITEM.select(i)}, {RECORD.select(r)} FROM {table(Item)} {i}"
        f" INNER JOIN {table(Record)} {r} ON {r}.{column(Record, 'id')} = {i}.{column(Item, 'record')}"
        f" WHERE {i}.{column(Item, 'project')} = %s AND {i}.{column(Item, 'is_gold')} = %s{room}"
        f" AND NOT EXISTS (SELECT 1 FROM {table(Assignment)} {a}"
        f" WHERE {a}.{column(Assignment, 'annotator')} = %s AND {a}.{column(Assignment, 'item')} = {i}.{column(Item, 'id')})"
        # a sub-select PostgreSQL and SQLite evaluate once per claim, not once per candidate row
        f" AND NOT ({i}.{column(Item, 'record')} IN (SELECT {x}.{column(Response, 'record')}"
        f" FROM {table(Response)} {x} WHERE {x}.{column(Response, 'author')} = %s))"
        # breadth-first: the index annotate_item_queue's order, so the first unlocked row wins
        f" ORDER BY {i}.{column(Item, 'claimed')} DESC, {i}.{column(Item, 'id')} ASC LIMIT 1{lock}"
    )


def claim_candidate(project: AnnotationProject, user_id: int, gold: bool) -> Item | None:
    """The queue's next item for this user, with its record, locked until the transaction
    ends. PostgreSQL skips rows other claimers hold, so claims never wait on each other, and
    re-checks `claimed < overlap` on a row updated since its snapshot, so it never
    over-collects. Never an item the user has an assignment on or whose record has a response
    they wrote. Call inside the claim's transaction."""
    conn = db()
    params = [project.pk, gold] + ([] if gold else [project.overlap]) + [user_id, user_id]
    row = fetch_one(_claim_sql(conn.vendor, gold, conn.features.has_select_for_update_skip_locked), params)
    if row is None:
        return None
    item = ITEM.load(row, 0, conn)
    item.record = RECORD.load(row, ITEM.width, conn)
    return item


def candidate_exists(project: AnnotationProject, user_id: int, gold: bool) -> bool:
    """Whether a plain read (no lock, no skipping) finds an item `claim_candidate` could give
    this user: after a claim found nothing, True means it skipped rows others held."""
    params = [project.pk, gold] + ([] if gold else [project.overlap]) + [user_id, user_id]
    return fetch_one(_claim_sql(db().vendor, gold, False), params) is not None


@cache
def _assignment_sql(vendor: str, lock: bool) -> str:
    a, i = "a", "i"
    return (
        f"SELECT {ASSIGNMENT.select(a)}, {ITEM.select(i)} FROM {table(Assignment)} {a}"
        f" INNER JOIN {table(Item)} {i} ON {i}.{column(Item, 'id')} = {a}.{column(Assignment, 'item')}"
        f" WHERE {a}.{column(Assignment, 'project')} = %s AND {a}.{column(Assignment, 'annotator')} = %s"
        f" AND {a}.{column(Assignment, 'item')} = %s"
        f" ORDER BY {a}.{column(Assignment, 'id')} ASC LIMIT 1{f' FOR UPDATE OF {a}' if lock else ''}"
    )


def assignment_of(project_id: int, user_id: int, item_id: int, *, lock: bool) -> Assignment | None:
    """The user's assignment on the item, with the item (not its record). `lock`: FOR UPDATE
    of the assignment row (where the database has row locks), inside a transaction."""
    conn = db()
    row = fetch_one(_assignment_sql(conn.vendor, lock and conn.features.has_select_for_update),
                    [project_id, user_id, item_id])
    if row is None:
        return None
    assignment = ASSIGNMENT.load(row, 0, conn)
    assignment.item = ITEM.load(row, ASSIGNMENT.width, conn)
    return assignment


@cache
def _counter_sql(vendor: str, field: str) -> str:
    name = column(Item, field)
    return f"UPDATE {table(Item)} SET {name} = ({name} + %s) WHERE {column(Item, 'id')} = %s"


def add_to_counter(item_id: int, field: str, delta: int) -> None:
    """Item.claimed or Item.submitted += delta, computed by the database (no lost updates)."""
    execute(_counter_sql(db().vendor, field), [delta, item_id])


def _with_counter(conn, sql: str, params: list, bump) -> tuple[str, list, bool]:
    """`bump` = (Item counter, item id, delta) joined to the write `sql` as a data-modifying
    WITH on PostgreSQL: one round trip instead of two, in the same transaction as before.
    Returns the statement, its parameters and whether the counter still needs its own."""
    if bump is None:
        return sql, params, False
    field, item_id, delta = bump
    if conn.vendor != "postgresql":
        return sql, params, True
    return f"WITH counter AS ({_counter_sql(conn.vendor, field)}) {sql}", [delta, item_id, *params], False


@cache
def _texts_sql(vendor: str, count: int) -> str:
    return (f"SELECT {column(Response, 'id')}, {column(Response, 'text')} FROM {table(Response)}"
            f" WHERE {column(Response, 'id')} IN ({placeholders(count)})")


def response_texts(ids) -> dict[int, str]:
    ids = list(ids)
    if not ids:
        return {}
    return dict(fetch_all(_texts_sql(db().vendor, len(ids)), ids))


@cache
def _insert_sql(vendor: str, model) -> tuple[str, list]:
    auto = model._meta.auto_field
    fields = [f for f in model._meta.local_concrete_fields if f is not auto]
    return (f"INSERT INTO {table(model)} ({', '.join(qn(f.column) for f in fields)})"
            f" VALUES ({placeholders(len(fields))}) RETURNING {qn(auto.column)}"), fields


def insert(obj, bump: tuple[str, int, int] | None = None) -> None:
    """INSERT one new model instance and set its id, as `Model.objects.create` would (auto_now
    fields filled, values through the fields' conversions) without compiling a query. Sends
    no model signals, as bulk_create (none are connected to the models it is used for). Falls
    back to save() for a model without an auto id, or a value the database computes.
    `bump`: (Item counter, item id, delta) to change with it (see _with_counter)."""
    model, conn = type(obj), db()
    sql, fields = _insert_sql(conn.vendor, model) if model._meta.auto_field else (None, [])
    values = [f.pre_save(obj, True) for f in fields]
    if (sql is None or not conn.features.can_return_columns_from_insert
            or any(hasattr(v, "resolve_expression") for v in values)):
        obj.save(force_insert=True)
        if bump is not None:
            add_to_counter(bump[1], bump[0], bump[2])
        return
    sql, params, separately = _with_counter(
        conn, sql, [f.get_db_prep_save(v, conn) for f, v in zip(fields, values)], bump)
    row = fetch_one(sql, params)
    setattr(obj, model._meta.auto_field.attname, row[0])
    obj._state.adding = False
    obj._state.db = conn.alias
    if separately:
        add_to_counter(bump[1], bump[0], bump[2])


@cache
def _update_sql(vendor: str, model, names: tuple[str, ...]) -> tuple[str, list]:
    fields = [model._meta.get_field(name) for name in names]
    return (f"UPDATE {table(model)} SET {', '.join(f'{qn(f.column)} = %s' for f in fields)}"
            f" WHERE {qn(model._meta.pk.column)} = %s"), fields


def update_fields(obj, names, bump: tuple[str, int, int] | None = None) -> None:
    """UPDATE the named fields of a saved instance, as save(update_fields=...) without the
    signals. `bump`: (Item counter, item id, delta) to change with it (see _with_counter)."""
    conn = db()
    sql, fields = _update_sql(conn.vendor, type(obj), tuple(names))
    params = [*(f.get_db_prep_save(f.pre_save(obj, False), conn) for f in fields), obj.pk]
    sql, params, separately = _with_counter(conn, sql, params, bump)
    execute(sql, params)
    if separately:
        add_to_counter(bump[1], bump[0], bump[2])
