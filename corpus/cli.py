"""`winnow snapshot ...`: build, list and show snapshots from the command line."""

from __future__ import annotations

import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    snapshot = subparsers.add_parser("snapshot", help="build, list or show training snapshots")
    sub = snapshot.add_subparsers(dest="snapshot_command", required=True)

    build = sub.add_parser("build", help="build a snapshot from a recipe file (YAML or JSON)")
    build.add_argument("recipe", help="path to RECIPE.yaml or RECIPE.json")
    build.add_argument("--background", action="store_true",
                       help="hand the job to the worker instead of running it here")
    build.set_defaults(func=cmd_snapshot_build)

    listing = sub.add_parser("list", help="list snapshots")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_snapshot_list)

    show = sub.add_parser("show", help="show a snapshot's card and folder")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_snapshot_show)


def cmd_snapshot_build(args) -> int:
    from winnow.cli import _progress_bar, _setup_django

    _setup_django()
    from corpus.models import Snapshot
    from corpus.snapshots.job import start_snapshot_build
    from corpus.snapshots.recipe import RecipeError
    from jobs.runner import run_job

    path = Path(args.recipe)
    if not path.is_file():
        print(f"winnow snapshot build: no such file: {path}", file=sys.stderr)
        return 2
    try:
        snapshot = start_snapshot_build(path.read_text(), enqueue=args.background)
    except RecipeError as exc:
        print(f"winnow snapshot build: bad recipe: {exc.field}: {exc.reason}", file=sys.stderr)
        return 2
    if args.background:
        print(f"queued snapshot {snapshot.pk} (job {snapshot.job_id}); follow it with: "
              f"winnow jobs {snapshot.job_id} --follow")
        return 0
    bar, echo = _progress_bar(f"snapshot {snapshot.pk} {snapshot.kind}")
    run_job(snapshot.job_id, echo=echo)
    bar.close()
    snapshot.refresh_from_db()
    if snapshot.status != Snapshot.Status.READY:
        print(f"snapshot {snapshot.pk} failed: {snapshot.error}", file=sys.stderr)
        return 1
    counts = snapshot.counts
    extra = ""
    if "desirable" in counts:
        extra = f" ({counts['desirable']} desirable, {counts['undesirable']} undesirable)"
    print(f"snapshot {snapshot.pk} ready: {counts['train']} train, {counts['test']} test rows{extra}")
    print(f"  folder {snapshot.directory}")
    print(f"  sha256 {snapshot.content_hash}")
    return 0


def cmd_snapshot_list(args) -> int:
    from winnow.cli import _setup_django

    _setup_django()
    from corpus.models import Snapshot

    print(f"{'id':>5}  {'kind':<10} {'status':<9} {'train':>9} {'test':>8}  name")
    for s in Snapshot.objects.order_by("-id")[: args.limit]:
        print(f"{s.pk:>5}  {s.kind:<10} {s.status:<9} {s.counts.get('train', '-'):>9} "
              f"{s.counts.get('test', '-'):>8}  {s.name}")
    return 0


def cmd_snapshot_show(args) -> int:
    from winnow.cli import _setup_django

    _setup_django()
    from corpus.models import Snapshot

    snapshot = Snapshot.objects.filter(pk=args.id).first()
    if snapshot is None:
        print(f"winnow snapshot show: no snapshot {args.id}", file=sys.stderr)
        return 2
    print(f"snapshot {snapshot.pk} {snapshot.name} ({snapshot.kind}): {snapshot.status}")
    if snapshot.error:
        print(f"  error: {snapshot.error}")
    card = snapshot.directory / "card.md"
    if card.is_file():
        print(f"  folder {snapshot.directory}\n")
        print(card.read_text())
    return 0
