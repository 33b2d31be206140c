"""The import job: a file of rows -> Records, Responses and Feedback.

Two streaming passes over the file. The first validates every row (and counts them, which
gives the progress bar its total); if any row is bad and `skip_invalid` is off, the job fails
with a line-numbered report and nothing is written. The second writes in batches: each batch
is one transaction that also stores the job's checkpoint (the last line written), so a worker
killed half-way resumes after the last committed batch, and a job that ends failed or
cancelled deletes what it wrote (every row carries its job id). Records whose external id is
already in the dataset are skipped, so re-importing a file does not duplicate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from jobs.registry import JobFailed, job_handler

from .formats import (
    ImportFileError,
    ImportItem,
    ImportOptions,
    RowError,
    detect_file_format,
    read_items,
    sniff_head,
)
from .models import Dataset, Feedback, Record, Response

KIND = "corpus.import"
MAX_REPORTED_ERRORS = 1000
PROGRESS_EVERY = 5000


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


class _Validation:
    def __init__(self):
        self.rows = 0
        self.valid = 0
        self.invalid = 0
        self.errors: list[dict] = []
        self.external_ids: dict[str, int] = {}

    def reject(self, error: RowError) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error.as_dict())

    def see(self, item: ImportItem | RowError) -> bool:
        """Count the row; True if it will be written."""
        self.rows += 1
        if isinstance(item, RowError):
            self.reject(item)
            return False
        if item.external_id is not None:
            first = self.external_ids.setdefault(item.external_id, item.line)
            if first != item.line:
                self.reject(RowError(item.line, "id", f"external id {item.external_id!r} "
                                                      f"repeats line {first}"))
                return False
        self.valid += 1
        return True


def _records_for(dataset: Dataset, job_id: int, source: str, items: list[ImportItem]):
    return [
        Record(
            dataset=dataset, kind=item.kind, prompt=item.prompt, context=item.context,
            history=item.history, metadata=item.metadata, external_id=item.external_id,
            source=source, provenance={"job": job_id, "line": item.line, "shape": item.shape},
            job_id=job_id,
        )
        for item in items
    ]


def write_batch(dataset: Dataset, job_id: int, source: str, items: list[ImportItem]) -> dict:
    """Write one batch of valid items; returns what was written. Call inside a transaction."""
    ids = [item.external_id for item in items if item.external_id is not None]
    existing = set()
    if ids:
        existing = set(
            Record.objects.filter(dataset=dataset, external_id__in=ids)
            .values_list("external_id", flat=True)
        )
    fresh = [item for item in items if item.external_id is None or item.external_id not in existing]
    records = Record.objects.bulk_create(_records_for(dataset, job_id, source, fresh))

    responses = [
        Response(record=record, text=r.text, author_kind=r.author_kind, model_name=r.model_name,
                 provenance={"job": job_id, "line": item.line})
        for record, item in zip(records, fresh)
        for r in item.responses
    ]
    responses = Response.objects.bulk_create(responses)

    feedback = []
    position = 0
    for record, item in zip(records, fresh):
        response_ids = [response.pk for response in responses[position:position + len(item.responses)]]
        position += len(item.responses)
        for fb in item.feedback:
            payload = dict(fb.payload)
            for key in fb.refs:
                payload[key] = response_ids[payload[key]]
            feedback.append(Feedback(
                record=record, kind=fb.kind, payload=payload, author_kind="human",
                provenance={"job": job_id, "line": item.line, "imported": True},
            ))
    Feedback.objects.bulk_create(feedback)
    return {
        "records": len(records), "responses": len(responses), "feedback": len(feedback),
        "skipped_existing": len(items) - len(fresh),
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

    def items():
        file_format = resolve_file_format(path, params["filename"], params.get("file_format"))
        return read_items(path, file_format=file_format, shape=params.get("shape"), options=options)

    # Pass 1: validate everything before writing anything.
    check = _Validation()
    ctx.progress(0, None, stage="validating")
    try:
        for item in items():
            check.see(item)
            if check.rows % PROGRESS_EVERY == 0:
                ctx.progress(check.rows, None, stage="validating")
    except ImportFileError as exc:
        raise JobFailed(str(exc.error), details={"errors": [exc.error.as_dict()], "rows": 0}) from None

    report = {"rows": check.rows, "valid": check.valid, "invalid": check.invalid,
              "errors": check.errors, "errors_truncated": check.invalid > len(check.errors)}
    if check.invalid and not params.get("skip_invalid"):
        first = RowError(**check.errors[0])
        raise JobFailed(
            f"{check.invalid} of {check.rows} rows are invalid, so nothing was written "
            f"(first: {first}). Fix them, or import with skip_invalid to load the valid rows.",
            details=report,
        )
    if check.invalid:
        ctx.log(f"skipping {check.invalid} invalid rows (first: {RowError(**check.errors[0])})")

    # Pass 2: write in batches; resume after the last committed batch.
    counts = {"records": 0, "responses": 0, "feedback": 0, "skipped_existing": 0}
    counts.update(ctx.state.get("counts", {}))
    last_line = ctx.state.get("line", 0)
    written = ctx.state.get("rows_done", 0)
    if last_line:
        ctx.log(f"resuming after line {last_line} ({written} rows already written)")
    batch_size = settings.WINNOW_IMPORT_BATCH_SIZE
    seen = _Validation()
    batch: list[ImportItem] = []

    def flush():
        nonlocal written
        with transaction.atomic():
            for key, value in write_batch(dataset, ctx.job.pk, source, batch).items():
                counts[key] += value
            written += len(batch)
            ctx.progress(written, check.valid, stage="writing")
            ctx.checkpoint(line=batch[-1].line, rows_done=written, counts=counts)
        batch.clear()

    ctx.progress(written, check.valid, stage="writing")
    for item in items():
        if not seen.see(item) or item.line <= last_line:
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()

    if params.get("stored"):
        default_storage.delete(params["path"])
    del report["valid"]
    report.update(counts)
    ctx.log(
        f"imported {counts['records']} records, {counts['responses']} responses, "
        f"{counts['feedback']} feedback; {counts['skipped_existing']} already present, "
        f"{check.invalid} invalid"
    )
    return report
