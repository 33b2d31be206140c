"""The import job: a file of rows -> Records, Responses and Feedback.

One streaming pass over the file, writing in batches: each batch is one transaction that also
stores the job's checkpoint (the last line written), so a worker killed half-way resumes after
the last committed batch. If any row is bad and `skip_invalid` is off, writing stops at the
first bad row, the scan goes on to report every bad row with its line number, and the job fails
and deletes what it wrote (every row carries its job id): nothing is left behind. (Validating
the whole file first, then writing, was measured at two-thirds of this speed: parsing is a
third of the work.) Records whose external id is already in the dataset are skipped, so
re-importing a file does not duplicate it. Big files are parsed in a child process so that
parsing and writing overlap (formats.parsed_chunks_in_child).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from jobs.registry import JobFailed, job_handler

from .bulk import RowInserter, as_json, last_ids
from .formats import (
    ImportFileError,
    ImportOptions,
    RowError,
    detect_file_format,
    estimate_rows,
    parsed_chunks,
    parsed_chunks_in_child,
    sniff_head,
)
from .models import Dataset, Feedback, Record, Response

KIND = "corpus.import"
MAX_REPORTED_ERRORS = 1000


@dataclass
class ImportRequest:
    """What an import needs; stored as the job's params."""

    dataset_id: int
    path: str  # a local path, or a storage name when `stored` is true
    filename: str
    file_format: str | None = None
    shape: str | None = None
    skip_invalid: bool = False
    response_author_kind: str = "human"
    model_name: str = ""
    source: str = ""
    stored: bool = False  # the file is our copy of an upload: delete it when the job ends

    def as_params(self) -> dict:
        return dict(self.__dict__)


def _local_path(params: dict) -> Path:
    return Path(default_storage.path(params["path"]) if params.get("stored") else params["path"])


def resolve_file_format(path: Path, filename: str, named: str | None) -> str:
    if named:
        return named
    fmt = detect_file_format(filename, sniff_head(path))
    if fmt is None:
        raise ImportFileError(
            f"cannot tell the file format of {filename!r}; name it (jsonl, json, csv, parquet) "
            "or use a .jsonl, .json, .csv or .parquet file"
        )
    return fmt


class _ErrorReport:
    def __init__(self):
        self.rows = 0
        self.invalid = 0
        self.errors: list[dict] = []

    def add(self, error: dict) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)


@functools.cache
def _inserters() -> tuple[RowInserter, RowInserter, RowInserter]:
    """Built on first use (the SQL depends on the database vendor), then reused."""
    return (
        RowInserter(Record, ["dataset", "kind", "prompt", "context", "history", "metadata",
                             "external_id", "source", "provenance", "status", "status_reason",
                             "job"]),
        RowInserter(Response, ["record", "text", "author_kind", "model_name",
                               "generation_params", "provenance", "status", "status_reason"]),
        RowInserter(Feedback, ["record", "kind", "payload", "author_kind", "model_name",
                               "provenance"]),
    )


def write_batch(
    dataset: Dataset, job_id: int, source: str, rows: list[list], *, check_existing: bool = True
) -> dict:
    """Write one batch of spooled items (see formats.item_to_row); returns what was written.

    Call inside a transaction. `check_existing=False` skips the external-id lookup when the
    dataset held no external ids before this job (the file's own repeats were rejected in
    validation, and the unique index still guards against a concurrent import).
    """
    records_in, responses_in, feedback_in = _inserters()
    fresh = rows
    ids = [row[7] for row in rows if row[7] is not None] if check_existing else []
    if ids:
        # Served by the (dataset, external_id) unique index; a scan here made imports quadratic.
        existing = set(
            Record.objects.filter(dataset=dataset, external_id__in=ids)
            .order_by()  # the default ORDER BY id would steer the planner to the (dataset, id) index
            .values_list("external_id", flat=True)
        )
        if existing:
            fresh = [row for row in rows if row[7] is None or row[7] not in existing]
    records_in.insert([
        (dataset.pk, kind, prompt, context, history, metadata, external_id,
         source, f'{{"job": {job_id}, "line": {line}, "shape": "{shape}"}}', "kept", "", job_id)
        for line, shape, kind, prompt, context, history, metadata, external_id, _, _ in fresh
    ])
    record_ids = last_ids(Record, len(fresh), job_id=job_id)

    responses = [
        (record_id, text, author_kind, model_name, "{}", f'{{"job": {job_id}, "line": {row[0]}}}',
         "kept", "")
        for record_id, row in zip(record_ids, fresh)
        for text, author_kind, model_name in row[8]
    ]
    responses_in.insert(responses)

    feedback = []
    if any(row[9] for row in fresh):
        response_ids = list(
            Response.objects.filter(record_id__in=record_ids).order_by("pk").values_list("pk", flat=True)
        )
        position = 0
        for record_id, row in zip(record_ids, fresh):
            mine = response_ids[position:position + len(row[8])]
            position += len(row[8])
            for kind, payload, refs in row[9]:
                payload = dict(payload)
                for key in refs:
                    payload[key] = mine[payload[key]]
                feedback.append((record_id, kind, as_json(payload), "human", "",
                                 as_json({"job": job_id, "line": row[0], "imported": True})))
        feedback_in.insert(feedback)
    return {
        "records": len(fresh), "responses": len(responses), "feedback": len(feedback),
        "skipped_existing": len(rows) - len(fresh),
    }


def delete_import_writes(job) -> None:
    """Undo an abandoned import: its records (and, by cascade, responses and feedback)."""
    deleted, _ = Record.objects.filter(job=job).delete()
    if job.params.get("stored"):
        default_storage.delete(job.params["path"])


@job_handler(KIND, on_abandon=delete_import_writes)
def run_import(ctx) -> dict:
    params = ctx.params
    try:
        dataset = Dataset.objects.get(pk=params["dataset_id"])
    except Dataset.DoesNotExist:
        raise JobFailed(f"dataset {params['dataset_id']} no longer exists") from None
    path = _local_path(params)
    if not path.exists():
        raise JobFailed(f"the uploaded file {params['filename']!r} is gone from {path}")
    options = ImportOptions(params.get("response_author_kind", "human"), params.get("model_name", ""))
    source = params.get("source") or f"import:{params['filename']}"

    # One streaming pass: rows are written in batches as they are read, each batch one
    # transaction with the checkpoint. The first invalid row (without skip_invalid) stops all
    # writing; the scan goes on to report every bad row, then the job fails and on_abandon
    # deletes the batches already written, so the end state is "nothing written".
    check = _ErrorReport()
    counts = {"records": 0, "responses": 0, "feedback": 0, "skipped_existing": 0}
    counts.update(ctx.state.get("counts", {}))
    last_line = ctx.state.get("line", 0)
    written = ctx.state.get("rows_done", 0)
    if last_line:
        ctx.log(f"resuming after line {last_line} ({written} rows already written)")
    skip_invalid = bool(params.get("skip_invalid"))
    batch_size = settings.WINNOW_IMPORT_BATCH_SIZE
    check_existing = (
        Record.objects.filter(dataset=dataset, external_id__isnull=False)
        .exclude(job_id=ctx.job.pk).exists()
    )
    batch: list[list] = []

    def flush():
        nonlocal written
        with transaction.atomic():
            result = write_batch(dataset, ctx.job.pk, source, batch, check_existing=check_existing)
            for key, value in result.items():
                counts[key] += value
            written += len(batch)
            ctx.progress(check.rows, max(total, check.rows))
            ctx.checkpoint(line=batch[-1][0], rows_done=written, counts=counts)
        batch.clear()

    try:
        file_format = resolve_file_format(path, params["filename"], params.get("file_format"))
        total = estimate_rows(path, file_format)
        ctx.progress(0, total, stage="importing")
        # Big files are parsed in a child process, overlapping with the writes here.
        in_child = path.stat().st_size >= settings.WINNOW_IMPORT_PARALLEL_BYTES
        chunks = (parsed_chunks_in_child if in_child else parsed_chunks)(
            path, file_format, params.get("shape"), options
        )
        for chunk in chunks:
            for entry in chunk:
                check.rows += 1
                if isinstance(entry, dict):  # a row error
                    check.add(entry)
                    if not skip_invalid:
                        batch.clear()  # stop writing; keep scanning to report every bad row
                    continue
                if (check.invalid and not skip_invalid) or entry[0] <= last_line:
                    continue
                batch.append(entry)
                if len(batch) >= batch_size:
                    flush()
            ctx.progress(check.rows, max(total, check.rows))
    except ImportFileError as exc:
        raise JobFailed(str(exc.error), details={"errors": [exc.error.as_dict()], "rows": 0}) from None

    report = {"rows": check.rows, "invalid": check.invalid, "errors": check.errors,
              "errors_truncated": check.invalid > len(check.errors)}
    if check.invalid and not skip_invalid:
        first = RowError(**check.errors[0])
        raise JobFailed(
            f"{check.invalid} of {check.rows} rows are invalid, so nothing was written "
            f"(first: {first}). Fix them, or import with skip_invalid to load the valid rows.",
            details=report,
        )
    if batch:
        flush()
    if check.invalid:
        ctx.log(f"skipped {check.invalid} invalid rows (first: {RowError(**check.errors[0])})")
    ctx.progress(check.rows, check.rows)

    if params.get("stored"):
        default_storage.delete(params["path"])
    report.update(counts)
    ctx.log(
        f"imported {counts['records']} records, {counts['responses']} responses, "
        f"{counts['feedback']} feedback; {counts['skipped_existing']} already present, "
        f"{check.invalid} invalid"
    )
    return report
