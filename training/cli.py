"""This app's `winnow` subcommands (see winnow/cli.py).

    winnow train start --method dpo --snapshot 3 [--base-model NAME|ID] [--mode lora]
                       [--set learning_rate=5e-5 --set max_steps=100] [--background]
    winnow train list
    winnow train show ID [--follow]       status, progress bar while it runs, evaluation
    winnow train cancel ID | resume ID
    winnow models [--register PATH --name NAME [--base NAME|ID]]
"""

from __future__ import annotations

import json
import sys
import time


def _setup():
    from winnow.cli import _setup_django

    _setup_django()


def _parse_sets(pairs: list[str]) -> dict:
    config = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"winnow train: --set needs KEY=VALUE, got {pair!r}")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def _model(ref: str):
    from corpus.models import RegisteredModel

    found = RegisteredModel.objects.filter(pk=int(ref)) if ref.isascii() and ref.isdigit() else \
        RegisteredModel.objects.filter(name=ref)
    model = found.first()
    if model is None:
        raise SystemExit(f"winnow: no registered model {ref!r} (see `winnow models`)")
    return model


def cmd_start(args) -> int:
    _setup()
    from corpus.bundled_model import register_bundled_model
    from corpus.models import Snapshot
    from training.config import ConfigError
    from training.services import start_run

    snapshot = Snapshot.objects.filter(pk=args.snapshot).first()
    if snapshot is None:
        print(f"winnow train: no snapshot {args.snapshot}", file=sys.stderr)
        return 2
    base = _model(args.base_model) if args.base_model else register_bundled_model()
    reward = _model(args.reward_model) if args.reward_model else None
    try:
        run = start_run(method=args.method, mode=args.mode, base_model=base, snapshot=snapshot,
                        config=_parse_sets(args.set), reward_model=reward, name=args.name or "")
    except ConfigError as exc:
        for field, reason in exc.errors.items():
            print(f"winnow train: {field}: {reason}", file=sys.stderr)
        return 2
    print(f"run {run.pk} queued on the training queue (job {run.job_id}); a worker with "
          f"--queue-name training runs it")
    if args.background:
        return 0
    return _follow(run.pk)


def _follow(run_id: int) -> int:
    from tqdm import tqdm

    from training.models import TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    bar = tqdm(desc=f"run {run.pk} {run.method}", unit="step", dynamic_ncols=True)
    try:
        while not run.is_finished:
            if run.total_steps and bar.total != run.total_steps:
                bar.total = run.total_steps
            bar.n = run.step
            last = run.metrics.filter(loss__isnull=False).order_by("-id").first()
            postfix = {"stage": run.stage or run.status}
            if last:
                postfix["loss"] = f"{last.loss:.4f}"
            bar.set_postfix(postfix)
            bar.refresh()
            time.sleep(1)
            run.refresh_from_db()
        bar.n = run.step
        bar.refresh()
    finally:
        bar.close()
    return _show(run)


def _show(run) -> int:
    print(f"run {run.pk}: {run.method}/{run.mode} {run.status} at step {run.step}/"
          f"{run.total_steps or '?'} ({run.stage})")
    for phase in ("before", "after"):
        values = (run.evaluation or {}).get(phase)
        if values:
            shown = {k: round(v, 4) for k, v in values.items()
                     if k in ("loss", "perplexity", "accuracy", "rewards/accuracies",
                              "rewards/margins")}
            print(f"  eval {phase}: {shown}")
    if run.win_rate is not None:
        print(f"  win rate vs base: {run.win_rate:.2f}")
    if run.artifact_id:
        print(f"  model: {run.artifact.name} ({run.artifact.format}) at {run.artifact.path}")
    if run.error:
        print(f"  error: {run.error.splitlines()[0]}")
    return 0 if run.status in ("succeeded", "queued", "running") else 1


def cmd_list(args) -> int:
    _setup()
    from training.models import TrainingRun

    print(f"{'id':>5}  {'method':<8} {'mode':<7} {'status':<10} {'steps':>11}  {'win':>5}  name")
    for run in TrainingRun.objects.all()[: args.limit]:
        steps = f"{run.step}/{run.total_steps or '?'}"
        win = f"{run.win_rate:.2f}" if run.win_rate is not None else "-"
        print(f"{run.pk:>5}  {run.method:<8} {run.mode:<7} {run.status:<10} {steps:>11}  "
              f"{win:>5}  {run.name}")
    return 0


def _get_run(run_id: int):
    from training.models import TrainingRun

    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        raise SystemExit(f"winnow train: no run {run_id}")
    return run


def cmd_show(args) -> int:
    _setup()
    run = _get_run(args.id)
    if args.follow and not run.is_finished:
        return _follow(run.pk)
    return _show(run)


def cmd_cancel(args) -> int:
    _setup()
    from training.services import cancel_run

    run = cancel_run(_get_run(args.id))
    print(f"run {run.pk}: cancel requested ({run.status})")
    return 0


def cmd_resume(args) -> int:
    _setup()
    from training.services import RunStateError, resume_run

    try:
        run = resume_run(_get_run(args.id))
    except RunStateError as exc:
        print(f"winnow train: {exc}", file=sys.stderr)
        return 2
    print(f"run {run.pk} queued to resume from its last checkpoint (job {run.job_id})")
    return 0 if args.background else _follow(run.pk)


def cmd_models(args) -> int:
    _setup()
    from corpus.bundled_model import is_prepared, register_bundled_model
    from corpus.models import RegisteredModel

    if args.register:
        from training.api import RegisteredModelSerializer

        data = {"name": args.name, "path": args.register}
        if args.base:
            data["base"] = _model(args.base).pk
        serializer = RegisteredModelSerializer(data=data)
        if not serializer.is_valid():
            for field, reasons in serializer.errors.items():
                print(f"winnow models: {field}: {' '.join(map(str, reasons))}", file=sys.stderr)
            return 2
        model = serializer.save()
        print(f"registered {model.name} (id {model.pk}, {model.format})")
        return 0
    if is_prepared():
        register_bundled_model()
    print(f"{'id':>4}  {'origin':<8} {'format':<8} {'name':<40} path")
    for model in RegisteredModel.objects.all():
        print(f"{model.pk:>4}  {model.origin:<8} {model.format:<8} {model.name:<40} {model.path}")
    return 0


def add_commands(subparsers) -> None:
    """Add subcommands; each sets `func(args) -> int` with set_defaults."""
    train = subparsers.add_parser("train", help="start and watch training runs")
    sub = train.add_subparsers(dest="train_command", required=True)

    start = sub.add_parser("start", help="start a run (and follow it with a progress bar)")
    start.add_argument("--method", required=True,
                       choices=["sft", "pretrain", "reward", "rlhf", "dpo", "kto", "orpo"])
    start.add_argument("--snapshot", type=int, required=True)
    start.add_argument("--base-model", help="registered model name or id (default: bundled)")
    start.add_argument("--mode", default="lora", choices=["full", "partial", "lora", "qlora"])
    start.add_argument("--reward-model", help="RLHF: the reward run's model (name or id)")
    start.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a hyper-parameter (JSON value), repeatable")
    start.add_argument("--name")
    start.add_argument("--background", action="store_true", help="queue it and return")
    start.set_defaults(func=cmd_start)

    listing = sub.add_parser("list", help="list runs")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="show a run (--follow: watch it)")
    show.add_argument("id", type=int)
    show.add_argument("--follow", action="store_true")
    show.set_defaults(func=cmd_show)

    cancel = sub.add_parser("cancel", help="checkpoint, then stop")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(func=cmd_cancel)

    resume = sub.add_parser("resume", help="continue a failed or cancelled run")
    resume.add_argument("id", type=int)
    resume.add_argument("--background", action="store_true")
    resume.set_defaults(func=cmd_resume)

    models = subparsers.add_parser("models", help="list registered models, or register a folder")
    models.add_argument("--register", metavar="PATH", help="a local Hugging Face folder")
    models.add_argument("--name", help="name for --register")
    models.add_argument("--base", help="for an adapter folder: its base model (name or id)")
    models.set_defaults(func=cmd_models)
