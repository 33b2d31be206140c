"""The `winnow` command: the common operations without remembering manage.py.

    winnow run                       web server + worker on the embedded default
    winnow import FILE --dataset D   import a file, with a progress bar
    winnow jobs [ID] [--follow]      list jobs, or show one (and watch it)
    winnow worker [db_worker flags]  a background worker (with stale-job recovery)
    winnow manage ARGS...            any manage.py command
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

from jobs.process import die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "winnow.settings")
    os.environ.setdefault("WINNOW_LOG_LEVEL", "WARNING")  # the progress bar says what happens
    import django

    django.setup()


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


# -- run -------------------------------------------------------------------------------------


class Supervisor:
    """Starts the web server and the worker, restarts one that dies, stops both on Ctrl-C."""

    def __init__(self, services: dict[str, list[str]]):
        self.services = services
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in services}
        self.stopping = False

    def start(self, name: str) -> None:
        # Own process group: a Ctrl-C in the terminal reaches the supervisor only, which then
        # stops the children in order instead of all of them dying at once.
        self.procs[name] = subprocess.Popen(
            self.services[name], start_new_session=True, preexec_fn=die_with_parent
        )
        print(f"winnow: started {name} (pid {self.procs[name].pid})", flush=True)

    def stop(self, *_args) -> None:
        if self.stopping:
            return
        self.stopping = True
        print("\nwinnow: stopping ...", flush=True)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"winnow: {name} did not stop in time; killing it", flush=True)
                proc.kill()
                proc.wait()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        for name in self.services:
            self.start(name)
        while not self.stopping:
            time.sleep(0.5)
            for name, proc in list(self.procs.items()):
                if self.stopping or proc.poll() is None:
                    continue
                now = time.monotonic()
                recent = [t for t in self.restarts[name] if now - t < 60] + [now]
                self.restarts[name] = recent
                if len(recent) > 5:
                    print(f"winnow: {name} keeps dying (exit {proc.returncode}); giving up", flush=True)
                    self.stop()
                    return 1
                print(f"winnow: {name} exited with {proc.returncode}; restarting", flush=True)
                self.start(name)
        return 0


def cmd_run(args) -> int:
    url = f"http://{args.host}:{args.port}"
    steps = [("migrate", "--noinput", "-v", "0"), ("ensure_admin", "--url", url)]
    if not args.no_llm:
        from synth.localserver import usable_port

        args.llm_port = usable_port(args.llm_port)
        steps.append(("ensure_local_provider", "--port", str(args.llm_port)))
    for step in steps:
        subprocess.run(_manage(*step), check=True)
    web = [
        sys.executable, "-m", "gunicorn", "winnow.wsgi:application",
        "--bind", f"{args.host}:{args.port}", "--workers", str(args.web_workers),
        "--threads", "4", "--timeout", "120", "--access-logfile", "-",
        "--chdir", str(ROOT),
    ]
    worker = _manage("worker", "--queue-name", "default,training", "--no-reload")
    services = {"web": web, "worker": worker}
    if not args.no_llm:
        # The bundled model behind the "local" provider (synth), on loopback only.
        from synth.localserver import bundled_model_folder, supervised_server_command

        services["llm"] = supervised_server_command(bundled_model_folder(ROOT), args.llm_port)
    print(f"winnow: serving on {url}  (API docs {url}/api/docs/, admin {url}/admin/)  Ctrl-C stops",
          flush=True)
    return Supervisor(services).run()


# -- import ----------------------------------------------------------------------------------


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="row", dynamic_ncols=True)
    state = {"stage": None}

    def echo(done: int, total: int | None, stage: str | None) -> None:
        if stage != state["stage"]:
            state["stage"] = stage
            bar.set_description(f"{desc}: {stage}" if stage else desc)
            bar.reset(total=total)
        elif total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return bar, echo


def cmd_import(args) -> int:
    _setup_django()
    from django.db import transaction

    from corpus.importing import KIND, ImportRequest
    from corpus.models import Dataset
    from jobs.models import Job
    from jobs.runner import create_job, run_job

    path = Path(args.file).resolve()
    if not path.is_file():
        print(f"winnow import: no such file: {path}", file=sys.stderr)
        return 2
    dataset, created = Dataset.objects.get_or_create(name=args.dataset)
    if created:
        print(f"created dataset {dataset.name!r} (id {dataset.pk})")
    params = ImportRequest(
        dataset_id=dataset.pk, path=str(path), filename=path.name, file_format=args.format,
        shape=args.shape, skip_invalid=args.skip_invalid, response_author_kind=args.author,
        model_name=args.model_name or "", source=args.source or "",
    )
    with transaction.atomic():
        job = create_job(KIND, params=params.as_params(), subject=f"dataset:{dataset.pk}",
                         enqueue=args.background)
    if args.background:
        print(f"queued job {job.pk}; follow it with: winnow jobs {job.pk} --follow")
        return 0
    bar, echo = _progress_bar(f"import {path.name}")
    run_job(job.pk, echo=echo)
    bar.close()
    job.refresh_from_db()
    return _report(job, Job)


def _report(job, Job) -> int:
    result = job.result or {}
    if job.status == Job.Status.SUCCEEDED:
        print(f"job {job.pk} succeeded: {result.get('records', 0)} records, "
              f"{result.get('responses', 0)} responses, {result.get('feedback', 0)} feedback; "
              f"{result.get('skipped_existing', 0)} already present, {result.get('invalid', 0)} invalid")
        return 0
    print(f"job {job.pk} {job.status}: {job.error}", file=sys.stderr)
    for error in (result.get("errors") or [])[:20]:
        where = f"line {error['line']}" if error.get("line") else "file"
        field = f"{error['field']}: " if error.get("field") else ""
        print(f"  {where}: {field}{error['reason']}", file=sys.stderr)
    return 1


# -- jobs ------------------------------------------------------------------------------------


def cmd_jobs(args) -> int:
    _setup_django()
    from jobs.models import Job

    if args.id is None:
        jobs = Job.objects.all()
        if args.status:
            jobs = jobs.filter(status=args.status)
        print(f"{'id':>6}  {'kind':<18} {'status':<10} {'progress':>15}  {'subject':<14} created")
        for job in jobs[: args.limit]:
            progress = f"{job.progress_done}/{job.progress_total}" if job.progress_total else str(job.progress_done)
            print(f"{job.pk:>6}  {job.kind:<18} {job.status:<10} {progress:>15}  {job.subject:<14} "
                  f"{job.created_at:%Y-%m-%d %H:%M:%S}")
        return 0
    job = Job.objects.filter(pk=args.id).first()
    if job is None:
        print(f"winnow jobs: no job {args.id}", file=sys.stderr)
        return 2
    if args.follow and not job.is_finished:
        bar, echo = _progress_bar(f"job {job.pk} {job.kind}")
        while not job.is_finished:
            echo(job.progress_done, job.progress_total, job.progress_stage or job.status)
            time.sleep(0.5)
            job.refresh_from_db()
        echo(job.progress_done, job.progress_total, job.progress_stage)
        bar.close()
    print(f"job {job.pk} {job.kind} on {job.subject or '-'}: {job.status} "
          f"(attempt {job.attempts}/{job.max_attempts})")
    for entry in reversed(list(job.log_entries.order_by("-id")[:10])):
        print(f"  {entry.at:%H:%M:%S} {entry.level:<7} {entry.message}")
    return _report(job, Job) if job.is_finished else 0


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args) -> int:
    _setup_django()
    from django.conf import settings
    from django.core.management import call_command

    from winnow.demo import Demo, DemoFailed, DemoOptions, format_report, option_errors

    options = DemoOptions(prompts=args.prompts, responses=args.responses, rule=args.rule,
                          eval_prompts=args.eval_prompts, epochs=args.epochs, seed=args.seed,
                          response_tokens=args.response_tokens, eval_tokens=args.eval_tokens,
                          round_two=args.round_two, name=args.name or "")
    errors = option_errors(options)
    if errors:
        for error in errors:
            print(f"winnow demo: {error}", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)
    demo = Demo(options, _progress_bar)
    try:
        report = demo.run_all()
    except DemoFailed as exc:
        print(f"winnow demo: {exc}", file=sys.stderr)
        return 1
    out = settings.DATA_DIR / "demo" / f"{report['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"report: {out}")
    return 0


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="winnow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the web UI and API with one worker")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--web-workers", type=int, default=2)
    run.add_argument("--llm-port", type=int, default=int(os.environ.get("WINNOW_LOCAL_LLM_PORT", 8011)),
                     help="port of the local model server (the bundled model)")
    run.add_argument("--no-llm", action="store_true", help="do not serve the bundled model")
    run.set_defaults(func=cmd_run)

    imp = sub.add_parser("import", help="import a JSONL, JSON, CSV or Parquet file")
    imp.add_argument("file")
    imp.add_argument("--dataset", required=True, help="dataset name (created if missing)")
    imp.add_argument("--format", choices=["jsonl", "json", "csv", "parquet"])
    imp.add_argument("--shape", choices=["alpaca", "dolly", "sharegpt", "messages",
                                         "prompt_completion", "preference", "binary", "text"])
    imp.add_argument("--skip-invalid", action="store_true",
                     help="load the valid rows and report the bad ones")
    imp.add_argument("--author", choices=["human", "model"], default="human",
                     help="who wrote the responses in the file")
    imp.add_argument("--model-name", help="the model that wrote them")
    imp.add_argument("--source", help='source label (default "import:FILENAME")')
    imp.add_argument("--background", action="store_true",
                     help="hand the job to the worker instead of running it here")
    imp.set_defaults(func=cmd_import)

    jobs = sub.add_parser("jobs", help="list jobs, or show one")
    jobs.add_argument("id", nargs="?", type=int)
    jobs.add_argument("--follow", action="store_true", help="watch until it finishes")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_jobs)

    demo = sub.add_parser("demo", help="the whole loop: generate, curate, judge, train DPO, evaluate, serve")
    demo.add_argument("--prompts", type=int, default=40, help="self-instruct prompts to keep")
    demo.add_argument("--responses", type=int, default=3, choices=range(2, 5),
                      help="responses per prompt, each under another system prompt")
    demo.add_argument("--rule", default="max_sentences:3", help="the target behaviour, as a rule judge")
    demo.add_argument("--eval-prompts", type=int, default=16, help="held-out prompts for the win rate")
    demo.add_argument("--epochs", type=float, default=2.0)
    demo.add_argument("--response-tokens", type=int, default=160)
    demo.add_argument("--eval-tokens", type=int, default=96)
    demo.add_argument("--round-two", type=int, default=8, help="prompts for the trained model's round")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--name", help="dataset and report name (default demo-DATE-TIME)")
    demo.set_defaults(func=cmd_demo)

    # Each app adds its own subcommands (APP/cli.py).
    for app in ("corpus", "synth", "curate", "annotate", "training"):
        import_module(f"{app}.cli").add_commands(sub)

    for name in ("worker", "manage"):
        p = sub.add_parser(name, help="a background worker" if name == "worker" else "run manage.py",
                           add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("worker", "manage"):
        rest = argv[1:]
        args = ["worker", *rest] if argv[0] == "worker" else rest
        os.execv(sys.executable, _manage(*args))
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
