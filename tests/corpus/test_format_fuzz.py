"""Fuzzing the import parsers: whatever a file holds, they answer with items or clean errors.

A clean error is a RowError (one bad row, with its line) or an ImportFileError (the file as a
whole); anything else escaping the reader would surface as a failed job with a traceback.
"""

import io
import json
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus.formats import (
    FILE_FORMATS,
    SHAPES,
    ImportFileError,
    ImportItem,
    ImportOptions,
    RowError,
    item_to_row,
    parse_row,
    read_items,
)
from corpus.importing import KIND, ImportRequest
from corpus.models import Dataset, Record
from jobs.models import Job
from jobs.runner import create_job, run_job

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Keys the shapes look for, mixed with noise, so rows get past shape detection often.
KEYS = st.sampled_from([
    "instruction", "input", "output", "context", "response", "category", "conversations",
    "messages", "prompt", "completion", "chosen", "rejected", "label", "margin", "text", "id",
    "from", "value", "role", "content", "model", "metadata", "x",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=12,
)
# Includes NUL and lone surrogates: JSON carries them, not every database column does.
TEXT = st.text(max_size=40) | st.sampled_from(["a\x00b", "\ud800", "é\u2028", " "])
ROLES = st.sampled_from(["system", "user", "assistant", "human", "gpt", "tool", ""])
MESSAGES = st.lists(st.fixed_dictionaries({"role": ROLES, "content": TEXT}), max_size=4)
SHAREGPT = st.lists(st.fixed_dictionaries({"from": ROLES, "value": TEXT}), max_size=4)
PROMPT = st.one_of(TEXT, MESSAGES)
VALID_ROWS = {
    "alpaca": st.fixed_dictionaries({"instruction": TEXT, "input": TEXT, "output": TEXT}),
    "dolly": st.fixed_dictionaries({"instruction": TEXT, "context": TEXT, "response": TEXT,
                                    "category": TEXT}),
    "sharegpt": st.fixed_dictionaries({"conversations": SHAREGPT}),
    "messages": st.fixed_dictionaries({"messages": MESSAGES}),
    "prompt_completion": st.fixed_dictionaries({"prompt": PROMPT, "completion": PROMPT}),
    "preference": st.fixed_dictionaries({"prompt": PROMPT, "chosen": PROMPT, "rejected": PROMPT},
                                        optional={"margin": SCALARS}),
    "binary": st.fixed_dictionaries({"prompt": PROMPT, "completion": PROMPT, "label": SCALARS}),
    "text": st.fixed_dictionaries({"text": TEXT}),
}


@st.composite
def near_valid_rows(draw, shape: str) -> dict:
    """A well-formed row of `shape`, then (usually) damaged: a key dropped, a value replaced by
    any JSON value, or extra keys added, so both the happy path and each check get exercised."""
    row = draw(VALID_ROWS[shape])
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop" and row:
            row.pop(draw(st.sampled_from(sorted(row))))
        elif action == "replace" and row:
            row[draw(st.sampled_from(sorted(row)))] = draw(JSON_VALUES)
        else:
            row[draw(KEYS)] = draw(JSON_VALUES)
    return row


ROWS = st.one_of(
    st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    *(near_valid_rows(shape) for shape in SHAPES),
)


def assert_clean(results: list) -> None:
    for result in results:
        assert isinstance(result, (ImportItem, RowError))
        if isinstance(result, ImportItem):
            assert isinstance(result.prompt, str)
            # What the writer stores must serialise: JSON columns go in as text.
            row = item_to_row(result)
            json.dumps([row[4], row[5]])  # history and metadata
        else:
            assert isinstance(result.reason, str) and result.reason


def read_all(path, file_format, shape=None) -> list:
    try:
        return list(read_items(path, file_format=file_format, shape=shape))
    except ImportFileError as error:
        assert error.error.reason
        return []


@FUZZ
@given(data=st.data(), author=st.sampled_from(["human", "model"]))
def test_parse_row_answers_with_an_item_or_a_row_error(data, author):
    shape = data.draw(st.sampled_from(SHAPES))
    row = data.draw(st.one_of(near_valid_rows(shape), ROWS))
    result = parse_row(shape, row, 7, ImportOptions(response_author_kind=author))
    assert_clean([result])
    if isinstance(result, RowError):
        assert result.line == 7


@FUZZ
@given(data=st.binary(max_size=400), file_format=st.sampled_from(FILE_FORMATS),
       shape=st.one_of(st.none(), st.sampled_from(SHAPES)))
def test_arbitrary_bytes_never_escape_as_anything_but_clean_errors(tmp_path, data, file_format, shape):
    path = tmp_path / f"fuzz.{file_format}"
    path.write_bytes(data)
    assert_clean(read_all(path, file_format, shape))


@FUZZ
@given(rows=st.lists(ROWS, min_size=1, max_size=5), shape=st.one_of(st.none(), st.sampled_from(SHAPES)))
def test_jsonl_and_json_rows_of_any_structure(tmp_path, rows, shape):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows))
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows))
    assert_clean(read_all(jsonl, "jsonl", shape))
    assert_clean(read_all(array, "json", shape))


CSV_CELLS = st.text(alphabet=string.printable + "é\u2028\x00", max_size=20)


@FUZZ
@given(header=st.lists(KEYS, min_size=1, max_size=5, unique=True),
       cells=st.lists(st.lists(CSV_CELLS, max_size=6), min_size=1, max_size=4),
       shape=st.one_of(st.none(), st.sampled_from(SHAPES)))
def test_csv_with_ragged_rows_and_odd_characters(tmp_path, header, cells, shape):
    path = tmp_path / "rows.csv"
    lines = [",".join(header)] + [",".join(json.dumps(cell) if i % 2 else cell for i, cell in enumerate(row))
                                  for row in cells]
    path.write_text("\n".join(lines), encoding="utf-8")
    assert_clean(read_all(path, "csv", shape))


@FUZZ
@given(columns=st.dictionaries(KEYS, st.sampled_from(["text", "int", "list", "null"]), min_size=1, max_size=4),
       length=st.integers(1, 4), shape=st.one_of(st.none(), st.sampled_from(SHAPES)))
def test_parquet_columns_of_any_type(tmp_path, columns, length, shape):
    values = {"text": ["a prompt"] * length, "int": list(range(length)),
              "list": [["x", "y"]] * length, "null": [None] * length}
    table = pa.table({name: values[kind] for name, kind in columns.items()})
    path = tmp_path / "rows.parquet"
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path.write_bytes(buffer.getvalue())
    assert_clean(read_all(path, "parquet", shape))



@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_import_job_stores_every_parsed_row_or_fails_cleanly_with_nothing_written(tmp_path, data):
    """Through the real import job and database: text the parser accepts must store (NUL
    characters, surrogates, huge numbers included), and a rejected file writes nothing."""
    shape = data.draw(st.sampled_from(SHAPES))
    rows = data.draw(st.lists(st.one_of(near_valid_rows(shape), VALID_ROWS[shape]), min_size=1, max_size=4))
    skip_invalid = data.draw(st.booleans())
    dataset = Dataset.objects.create(name=f"fuzz-{Dataset.objects.count()}")
    path = tmp_path / f"{dataset.name}.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    params = ImportRequest(dataset_id=dataset.pk, path=str(path), filename=path.name, shape=shape,
                           skip_invalid=skip_invalid)
    job = create_job(KIND, params=params.as_params(), subject=f"dataset:{dataset.pk}", enqueue=False)
    run_job(job.pk)
    job.refresh_from_db()
    written = Record.objects.filter(dataset=dataset).count()
    if job.status == Job.Status.SUCCEEDED:
        assert written == job.result["records"]
        assert written + job.result["invalid"] + job.result["skipped_existing"] == len(rows)
    else:
        assert job.status == Job.Status.FAILED
        assert job.result.get("errors"), f"failed without a row report: {job.error}"
        assert written == 0


@pytest.mark.parametrize("shape, row, field", [
    ("alpaca", {"instruction": "a\x00b", "output": "x"}, "instruction"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": "r\x00"}, "rejected"),
    ("messages", {"messages": [{"role": "user", "content": "\ud800"}]}, "messages"),
    ("text", {"text": "t", "n": 2**70}, "metadata"),
    ("text", {"text": "t", "metadata": {"k": "\x00"}}, "metadata"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": "r", "margin": "inf"}, "margin"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": "r", "margin": 10**400}, "margin"),
])
def test_values_no_database_column_stores_are_row_errors(shape, row, field):
    # Each was found by the fuzzers above: before, they crashed the job at write time.
    result = parse_row(shape, row, 3, ImportOptions())
    assert isinstance(result, RowError) and (result.line, result.field) == (3, field), result
