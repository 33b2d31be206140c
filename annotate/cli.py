"""This app's `winnow` subcommands (see winnow/cli.py).

    winnow annotate-demo                a demo dataset, projects and users (maria/ann/bob/rita)
    winnow annotate-status [PROJECT]    projects with progress, or one project's annotators and agreement
"""

from __future__ import annotations

import sys


def add_commands(subparsers) -> None:
    """Add subcommands; each sets `func(args) -> int` with set_defaults."""
    demo = subparsers.add_parser("annotate-demo", help="create demo annotation projects and users")
    demo.add_argument("--password", default="winnow-demo-pass")
    demo.set_defaults(func=cmd_demo)
    status = subparsers.add_parser("annotate-status", help="annotation progress and agreement")
    status.add_argument("project", nargs="?", type=int, help="a project id (default: list them)")
    status.set_defaults(func=cmd_status)


def _setup():
    from winnow.cli import _setup_django

    _setup_django()


def cmd_demo(args) -> int:
    _setup()
    from .demo import make_demo

    demo = make_demo(args.password)
    for name, project in demo["projects"].items():
        print(f"project {project.pk}: {name} ({project.items.count()} items)")
    print(f"users: maria (manager), ann and bob (annotators), rita (reviewer); password {args.password!r}")
    print("open http://127.0.0.1:8000/annotate/ after `winnow run`")
    return 0


def cmd_status(args) -> int:
    _setup()
    from . import stats
    from .models import AnnotationProject

    if args.project is None:
        for project in AnnotationProject.objects.order_by("id"):
            p = stats.progress(project)
            print(f"{project.pk:>4}  {project.name:<32} {p['annotations_done']:>6}/{p['annotations_wanted']:<6} "
                  f"{p['percent']:>5.1f}%  overlap {project.overlap}")
        return 0
    project = AnnotationProject.objects.filter(pk=args.project).first()
    if project is None:
        print(f"winnow annotate-status: no project {args.project}", file=sys.stderr)
        return 2
    p = stats.progress(project)
    print(f"{project.name}: {p['annotations_done']}/{p['annotations_wanted']} annotations ({p['percent']}%), "
          f"{p['items_complete']}/{p['items']} items complete")
    for row in p["annotators"]:
        print(f"  {row['annotator']:<20} {row['role'] or '-':<10} submitted {row['submitted']:>5}  "
              f"skipped {row['skipped']:>4}{'  EXCLUDED' if row['excluded'] else ''}")
    for q in stats.agreement_report(project)["questions"]:
        figures = [f"{label} {q[key]:.3f}" for key, label in (
            ("krippendorff_alpha", "alpha"), ("fleiss_kappa", "Fleiss kappa"),
            ("pairwise_agreement", "agreement"), ("kendall_tau_mean", "Kendall tau")) if q.get(key) is not None]
        print(f"  question {q['question']} ({q['kind']}): {', '.join(figures) or 'not enough overlap yet'}")
    return 0
