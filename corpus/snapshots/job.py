"""The `corpus.snapshot` job: stream records -> builder -> writer -> a ready snapshot.

A build writes into `<id>.partial` and renames it to `<id>` only when every file and the
manifest are complete, so a snapshot folder is never half-written. A resumed attempt (the
worker died) starts over: the output is deterministic, so starting over gives the same files.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from jobs.registry import JobFailed, job_handler
from jobs.runner import create_job

from ..models import Dataset, Snapshot
from .builders import builder_for, required_feedback_kinds
from .recipe import Recipe, RecipeError, parse_recipe
from .parallel import build_in_parts, plan_parts
from .stream import RecordStream, has_signal
from .writer import (
    EmptySnapshot,
    SnapshotWriter,
    card_text,
    digest_file,
    describe_empty,
    manifest_bytes,
)

KIND = "corpus.snapshot"
# rows per record is unknown before the build; this sizes the shuffle buckets only
EXPECTED_ROWS_PER_RECORD = 1


def resolve_datasets(entries: list) -> list[dict]:
    out = []
    for entry in entries:
        query = Dataset.objects.filter(pk=entry) if isinstance(entry, int) else Dataset.objects.filter(name=entry)
        dataset = query.first()
        if dataset is None:
            raise RecipeError("sources.datasets", f"no dataset {entry!r}; name an existing dataset by name or id")
        out.append({"id": dataset.pk, "name": dataset.name})
    return out


def excluded_author_ids(recipe: Recipe) -> set[int]:
    names = recipe.filters["exclude_annotators"]
    if not names:
        return set()
    found = dict(get_user_model().objects.filter(username__in=names).values_list("username", "pk"))
    missing = [n for n in names if n not in found]
    if missing:
        raise RecipeError("filters.exclude_annotators", f"no user {missing[0]!r}")
    return set(found.values())


def validate_recipe(raw) -> Recipe:
    """Parse a recipe and check it against the data: everything that can be a 400 is."""
    recipe = parse_recipe(raw, resolve_datasets)
    excluded_author_ids(recipe)
    tokenizer = recipe.output["tokenizer"]
    if tokenizer and not (Path(tokenizer) / "tokenizer_config.json").is_file():
        raise RecipeError("output.tokenizer", f"{tokenizer} is not a local tokenizer folder "
                          "(no tokenizer_config.json); e.g. the bundled model's folder")
    kinds = required_feedback_kinds(recipe)
    if kinds and not has_signal(recipe, kinds):
        names = ", ".join(d["name"] for d in recipe.data["sources"]["datasets"])
        wanted = " or ".join(kinds)
        raise RecipeError(
            "sources.datasets",
            f"{names} has no {wanted} feedback, so a {recipe.kind} snapshot would be empty; "
            "collect judgements first (annotation or an LLM judge), widen policies.signals, "
            "or build an sft snapshot",
        )
    return recipe


def start_snapshot_build(raw, *, user=None, enqueue: bool = True) -> Snapshot:
    """Validate the recipe (RecipeError on a bad one), create the snapshot row and its job."""
    recipe = validate_recipe(raw)
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            name=recipe.name, kind=recipe.kind, recipe=recipe.data,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        job = create_job(KIND, params={"snapshot": snapshot.pk}, subject=f"snapshot:{snapshot.pk}",
                         created_by=user, enqueue=enqueue)
        snapshot.job = job
        snapshot.save(update_fields=["job"])
    return snapshot


def _staging(snapshot: Snapshot) -> Path:
    return snapshot.directory.with_name(f"{snapshot.pk}.partial")


def _mark_failed(snapshot_id: int, error: str) -> None:
    Snapshot.objects.filter(pk=snapshot_id).exclude(status=Snapshot.Status.READY).update(
        status=Snapshot.Status.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


def abandon_snapshot(job) -> None:
    snapshot = Snapshot.objects.filter(pk=(job.params or {}).get("snapshot")).first()
    if snapshot is None:
        return
    shutil.rmtree(_staging(snapshot), ignore_errors=True)
    if snapshot.status == Snapshot.Status.BUILDING:
        _mark_failed(snapshot.pk, job.error or ("cancelled" if job.cancel_requested else "the build stopped"))


def build_files(snapshot: Snapshot, progress=None) -> dict:
    """Build the snapshot's folder. Returns {"counts", "stats", "content_hash"}.
    Raises RecipeError or EmptySnapshot with a reason for the user."""
    progress = progress or (lambda done, total, stage: None)
    recipe = parse_recipe(snapshot.recipe, resolve_datasets)
    builder = builder_for(recipe)
    kinds = builder.feedback_kinds
    if recipe.kind in ("preference", "binary"):
        kinds = required_feedback_kinds(recipe)
    stream = RecordStream(recipe, feedback_kinds=kinds, excluded_author_ids=excluded_author_ids(recipe))
    total = stream.count()
    staging = _staging(snapshot)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = SnapshotWriter(recipe, staging, expected_rows=total * EXPECTED_ROWS_PER_RECORD,
                            progress=progress)
    progress(0, total, "reading")
    excluded = excluded_author_ids(recipe)
    try:
        parts = plan_parts(recipe, stream, total)
        if len(parts) > 1:
            build_in_parts(recipe, parts, kinds=kinds, excluded=excluded, staging=staging,
                           expected_rows=total * EXPECTED_ROWS_PER_RECORD, writer=writer,
                           builder=builder, stream=stream, total=total, progress=progress)
        else:
            for index, record in enumerate(stream, 1):
                for built in builder.rows(record):
                    writer.add(built)
                if index % 2000 == 0:
                    progress(index, total, "reading")
        progress(total, total, "reading")
        summary = builder.summary()
        stream_stats = {
            "records_read": stream.stats.records, "responses_read": stream.stats.responses,
            "feedback_read": stream.stats.feedback_read, "feedback_used": stream.stats.feedback_used,
            "feedback_skipped": dict(sorted(stream.stats.skipped_feedback.items())),
        }
        try:
            result = writer.finish(builder)
        except EmptySnapshot as exc:
            if str(exc) != "no rows":
                raise
            raise EmptySnapshot(describe_empty(recipe, stream.stats.records, summary,
                                               stream_stats["feedback_skipped"])) from None
    except BaseException:
        writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    datasets = recipe.data["sources"]["datasets"]
    card = card_text(recipe, result, summary, datasets).encode()
    (staging / "card.md").write_bytes(card)
    result.files.append(digest_file(staging / "card.md"))
    manifest = manifest_bytes(recipe, result, summary, stream_stats)
    (staging / "manifest.json").write_bytes(manifest)
    content_hash = hashlib.sha256(manifest).hexdigest()
    final = snapshot.directory
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return {"counts": result.counts, "stats": {**summary, **stream_stats, **result.stats},
            "content_hash": content_hash}


@job_handler(KIND, on_abandon=abandon_snapshot)
def build_snapshot(ctx) -> dict:
    snapshot = Snapshot.objects.get(pk=ctx.params["snapshot"])
    if snapshot.status == Snapshot.Status.READY:
        return {"snapshot": snapshot.pk, "counts": snapshot.counts}  # immutable: never rebuilt
    try:
        built = build_files(snapshot, progress=ctx.progress)
    except (RecipeError, EmptySnapshot) as exc:
        _mark_failed(snapshot.pk, str(exc))
        raise JobFailed(str(exc), {"snapshot": snapshot.pk}) from None
    except Exception as exc:
        _mark_failed(snapshot.pk, f"{type(exc).__name__}: {exc}")
        raise
    Snapshot.objects.filter(pk=snapshot.pk).update(
        status=Snapshot.Status.READY, counts=built["counts"], stats=built["stats"],
        content_hash=built["content_hash"], error="", finished_at=timezone.now(),
    )
    ctx.log(f"snapshot {snapshot.pk} ready: {built['counts']['train']} train, "
            f"{built['counts']['test']} test rows")
    return {"snapshot": snapshot.pk, "counts": built["counts"], "content_hash": built["content_hash"]}
