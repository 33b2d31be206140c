"""A parallel build: record id ranges read and built by forked processes side by side.

Each part streams its own id range, runs the builder and spools rows exactly as a serial
build does (same split hash, same shuffle keys, same bucket count); the parent then sorts each
bucket across all parts' spools. Rows land in key order whichever part wrote them, so the
files are byte-identical to a serial build's. Stratified splits deal groups in reading order
and stay serial.

Forked, not spawned: a child inherits the settings (the test database included) and needs
no Django start-up. The parent closes its database connections before forking so no socket is
shared; each child opens its own.
"""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path

from django.conf import settings
from django.db import connection, connections

from jobs.process import forked_child

from .builders import SnapshotBuilder, builder_for
from .recipe import Recipe
from .stream import RecordStream
from .writer import SnapshotWriter

PROGRESS_EVERY = 2000


def plan_parts(recipe: Recipe, stream: RecordStream, total: int) -> list[tuple]:
    """[low, high) record id ranges of about equal size; one range means a serial build."""
    workers = settings.WINNOW_SNAPSHOT_WORKERS
    if (workers < 2 or total < settings.WINNOW_SNAPSHOT_PARALLEL_MIN_RECORDS
            or recipe.split["stratify_by_source"]):
        return [(None, None)]
    ids = stream.record_queryset().values_list("id", flat=True)
    bounds = [ids[total * i // workers] for i in range(1, workers)]
    edges = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:]))


def _run_part(recipe_data, kinds, excluded, staging, expected_rows, part, id_range, counter, results):
    forked_child()
    try:
        recipe = Recipe(recipe_data)
        builder = builder_for(recipe)
        stream = RecordStream(recipe, feedback_kinds=kinds, excluded_author_ids=excluded,
                              id_range=id_range)
        writer = SnapshotWriter(recipe, Path(staging), expected_rows=expected_rows, part=part)
        done = 0
        for record in stream:
            for built in builder.rows(record):
                writer.add(built)
            done += 1
            if done % PROGRESS_EVERY == 0:
                with counter.get_lock():
                    counter.value += PROGRESS_EVERY
        writer.close_spool()
        stats = stream.stats
        results.put((part, {
            "spool": str(writer.spool), "spooled": dict(writer.spooled),
            "skipped": dict(builder.skipped), "annotators": sorted(builder.annotators),
            "generator_models": sorted(builder.generator_models),
            "agreement_sum": builder.agreement_sum, "agreement_items": builder.agreement_items,
            "records": stats.records, "responses": stats.responses,
            "feedback_read": stats.feedback_read, "feedback_used": stats.feedback_used,
            "skipped_feedback": dict(stats.skipped_feedback),
        }))
    except BaseException as exc:  # reported to the parent, which fails the build with it
        results.put((part, {"error": f"{type(exc).__name__}: {exc}"}))
    finally:
        connection.close()


def build_in_parts(recipe: Recipe, parts: list[tuple], *, kinds, excluded: set[int], staging: Path,
                   expected_rows: int, writer: SnapshotWriter, builder: SnapshotBuilder,
                   stream: RecordStream, total: int, progress) -> None:
    """Run the parts, then fold their spools and statistics into `writer`, `builder` and
    `stream` as if one process had done the work."""
    connections.close_all()
    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    results = context.Queue()
    processes = {
        index: context.Process(
            target=_run_part, daemon=True, name=f"snapshot-part-{index}",
            args=(recipe.data, kinds, excluded, str(staging), expected_rows, index, id_range,
                  counter, results),
        )
        for index, id_range in enumerate(parts, start=1)
    }
    collected: dict[int, dict] = {}
    try:
        for process in processes.values():
            process.start()
        while len(collected) < len(processes):
            try:
                part, out = results.get(timeout=0.5)
                collected[part] = out
            except queue.Empty:
                dead = [i for i, p in processes.items() if p.exitcode is not None and i not in collected]
                if dead:
                    try:
                        part, out = results.get(timeout=5)
                        collected[part] = out
                        continue
                    except queue.Empty:
                        raise RuntimeError(f"snapshot part {dead[0]} died (exit code "
                                           f"{processes[dead[0]].exitcode})") from None
            progress(min(counter.value, total), total, "reading")
    finally:
        for process in processes.values():
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
    for part in sorted(collected):
        out = collected[part]
        if "error" in out:
            raise RuntimeError(f"snapshot part {part} failed: {out['error']}")
        writer.adopt(Path(out["spool"]), out["spooled"])
        builder.skipped.update(out["skipped"])
        builder.annotators.update(out["annotators"])
        builder.generator_models.update(out["generator_models"])
        builder.agreement_sum += out["agreement_sum"]
        builder.agreement_items += out["agreement_items"]
        stats = stream.stats
        stats.records += out["records"]
        stats.responses += out["responses"]
        stats.feedback_read += out["feedback_read"]
        stats.feedback_used += out["feedback_used"]
        for reason, n in out["skipped_feedback"].items():
            stats.skipped_feedback[reason] += n

