"""`winnow curate ...`: run a pipeline on a dataset (with a progress bar), list runs, show a
report, revert a run, check contamination between two files or a dataset and a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    curate = subparsers.add_parser("curate", help="deduplicate, find PII, filter a dataset")
    sub = curate.add_subparsers(dest="curate_command", required=True)

    run = sub.add_parser("run", help="run a curation pipeline on a dataset")
    run.add_argument("--dataset", required=True, help="dataset name or id")
    run.add_argument("--pipeline", help="a JSON file of [{step, config}] (default: the default "
                                        "pipeline: quality, exact_dedup, near_dedup, pii)")
    run.add_argument("--steps", help="comma-separated step names with default configs")
    run.add_argument("--background", action="store_true",
                     help="hand the job to the worker instead of running it here")
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="list curation runs")
    runs.add_argument("--dataset")
    runs.set_defaults(func=cmd_runs)

    report = sub.add_parser("report", help="show a run's report")
    report.add_argument("id", type=int)
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)

    revert = sub.add_parser("revert", help="undo a run")
    revert.add_argument("id", type=int)
    revert.set_defaults(func=cmd_revert)

    contamination = sub.add_parser(
        "contamination", help="near duplicates between a file (or dataset) and a benchmark file")
    contamination.add_argument("source", help="a JSONL/TXT file, or dataset:NAME")
    contamination.add_argument("against", help="a JSONL/TXT file, or dataset:NAME")
    contamination.add_argument("--field", default="prompt",
                               help="JSONL field holding the text (default prompt; also tries "
                                    "text, instruction, question)")
    contamination.add_argument("--threshold", type=float, default=0.8)
    contamination.set_defaults(func=cmd_contamination)


def _setup():
    from winnow.cli import _setup_django

    _setup_django()


def _dataset(name_or_id: str):
    from corpus.models import Dataset

    query = Dataset.objects.filter(pk=int(name_or_id)) if name_or_id.isascii() and name_or_id.isdigit() else \
        Dataset.objects.filter(name=name_or_id)
    dataset = query.first()
    if dataset is None:
        print(f"winnow curate: no dataset {name_or_id!r}", file=sys.stderr)
    return dataset


def cmd_run(args) -> int:
    _setup()
    from rest_framework.exceptions import ValidationError

    from curate.runs import start_run
    from jobs.runner import run_job
    from winnow.api import _flatten
    from winnow.cli import _progress_bar

    dataset = _dataset(args.dataset)
    if dataset is None:
        return 2
    pipeline = None
    if args.pipeline:
        pipeline = json.loads(Path(args.pipeline).read_text())
    elif args.steps:
        pipeline = [{"step": name.strip()} for name in args.steps.split(",") if name.strip()]
    try:
        run = start_run(dataset, pipeline, enqueue=args.background)
    except ValidationError as exc:
        for error in _flatten(exc.detail):
            print(f"winnow curate: {error['field']}: {error['reason']}", file=sys.stderr)
        return 2
    if args.background:
        print(f"queued curation run {run.pk} (job {run.job_id}); follow it with: "
              f"winnow jobs {run.job_id} --follow")
        return 0
    bar, echo = _progress_bar(f"curate {dataset.name}")
    run_job(run.job_id, echo=echo)
    bar.close()
    run.refresh_from_db()
    print_report(run)
    return 0 if run.status == "succeeded" else 1


def print_report(run) -> None:
    print(f"curation run {run.pk} on {run.dataset.name!r}: {run.status}"
          + (f" ({run.error})" if run.error else ""))
    for index, step in enumerate((run.report or {}).get("steps", []), start=1):
        counts = ", ".join(f"{n} {action}" for action, n in sorted(step.get("counts", {}).items()))
        print(f"  {index}. {step['step']}: {counts or 'no changes'}")
        for rule, n in sorted(step.get("by_rule", {}).items()):
            print(f"       {rule}: {n}")
        if step.get("cluster_sizes"):
            sizes = ", ".join(f"{size}: {n}" for size, n in step["cluster_sizes"].items())
            print(f"       cluster sizes (size: clusters): {sizes}")
    if (run.report or {}).get("totals"):
        print("  totals: " + ", ".join(f"{n} {a}" for a, n in sorted(run.report["totals"].items())))


def cmd_runs(args) -> int:
    _setup()
    from curate.models import CurationRun

    runs = CurationRun.objects.select_related("dataset")
    if args.dataset:
        dataset = _dataset(args.dataset)
        if dataset is None:
            return 2
        runs = runs.filter(dataset=dataset)
    print(f"{'id':>6}  {'dataset':<20} {'status':<10} {'steps':<40} created")
    for run in runs[:50]:
        steps = ",".join(s["step"] for s in run.pipeline)
        print(f"{run.pk:>6}  {run.dataset.name[:20]:<20} {run.status:<10} {steps[:40]:<40} "
              f"{run.created_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_report(args) -> int:
    _setup()
    from curate.models import CurationRun

    run = CurationRun.objects.select_related("dataset").filter(pk=args.id).first()
    if run is None:
        print(f"winnow curate: no run {args.id}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(run.report, indent=2))
    else:
        print_report(run)
    return 0


def cmd_revert(args) -> int:
    _setup()
    from curate.models import CurationRun
    from curate.pipeline import RevertRefused, revert_run

    run = CurationRun.objects.filter(pk=args.id).first()
    if run is None:
        print(f"winnow curate: no run {args.id}", file=sys.stderr)
        return 2
    try:
        restored = revert_run(run)
    except RevertRefused as exc:
        print(f"winnow curate: cannot revert run {run.pk}: {exc}", file=sys.stderr)
        return 1
    print(f"reverted curation run {run.pk}: {restored['records']} records and "
          f"{restored['responses']} responses restored")
    return 0


def _texts(spec: str, field: str) -> list[str] | None:
    if spec.startswith("dataset:"):
        from corpus.models import Record
        from curate.steps_dedup import record_text

        dataset = _dataset(spec.split(":", 1)[1])
        return None if dataset is None else [
            record_text(r) for r in Record.objects.filter(dataset=dataset).order_by("id")]
    path = Path(spec)
    if not path.is_file():
        print(f"winnow curate: no such file: {path}", file=sys.stderr)
        return None
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if path.suffix in (".jsonl", ".json"):
            row = json.loads(line)
            for name in (field, "text", "instruction", "question", "prompt"):
                if isinstance(row.get(name), str):
                    texts.append(row[name])
                    break
        else:
            texts.append(line)
    return texts


def cmd_contamination(args) -> int:
    _setup()
    from curate.steps_dedup import contamination_matches

    source, against = _texts(args.source, args.field), _texts(args.against, args.field)
    if source is None or against is None:
        return 2
    config = {"unit": "word", "n": 5, "num_perm": 128, "seed": 1, "threshold": args.threshold}
    matches = contamination_matches(source, against, config)
    hit = sorted({a for a, _, _ in matches})
    print(f"{len(hit)} of {len(source)} items of {args.source} near-duplicate {args.against} "
          f"(Jaccard >= {args.threshold})")
    for a, b, sim in matches[:20]:
        print(f"  item {a} ~ item {b} (Jaccard {sim:.2f}): {source[a][:70]!r}")
    return 0
