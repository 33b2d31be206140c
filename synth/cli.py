"""This app's `winnow` subcommands (see winnow/cli.py).

    winnow generate METHOD --dataset D [--provider P] [--set key=value ...] [--config JSON]
                                        [--seeds FILE] [--documents FILE ...] [--background]
    winnow provider list | health NAME | try NAME PROMPT | serve MODEL [--port N] [--wait]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    """Add subcommands; each sets `func(args) -> int` with set_defaults."""
    gen = subparsers.add_parser(
        "generate", help="generate data with an LLM (self_instruct, responses, judge, evol_instruct, cot, grounded)",
        description="Run a generation method with a provider into a dataset, with a progress bar.",
    )
    gen.add_argument("method")
    gen.add_argument("--dataset", required=True, help="dataset name (created if missing)")
    gen.add_argument("--provider", default="local", help='provider name (default "local": the bundled model)')
    gen.add_argument("--config", help="the method's config as a JSON object")
    gen.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="one config value (JSON or text); dotted keys nest, e.g. params.max_tokens=32")
    gen.add_argument("--seeds", help="self_instruct: seed tasks from a .txt (one a line) or .jsonl file")
    gen.add_argument("--documents", nargs="+", help="grounded: text files to generate from")
    gen.add_argument("--background", action="store_true", help="hand the job to the worker")
    gen.set_defaults(func=cmd_generate)

    prov = subparsers.add_parser("provider", help="list, check, try or serve LLM providers")
    prov_sub = prov.add_subparsers(dest="action", required=True)
    prov_sub.add_parser("list", help="list providers").set_defaults(func=cmd_provider_list)
    health = prov_sub.add_parser("health", help="a one-token completion against the provider")
    health.add_argument("name")
    health.set_defaults(func=cmd_provider_health)
    trial = prov_sub.add_parser("try", help="send one prompt and print the reply")
    trial.add_argument("name")
    trial.add_argument("prompt")
    trial.add_argument("--max-tokens", type=int, default=64)
    trial.set_defaults(func=cmd_provider_try)
    serve = prov_sub.add_parser("serve", help="serve a registered full-format model locally as a provider")
    serve.add_argument("model", help="RegisteredModel name or id")
    serve.add_argument("--port", type=int)
    serve.add_argument("--wait", action="store_true", help="wait until it answers")
    serve.set_defaults(func=cmd_provider_serve)


def _setup():
    from winnow.cli import _setup_django

    _setup_django()


def parse_assignments(pairs: list[str]) -> dict:
    config: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        key, raw = pair.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = config
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return config


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def cmd_generate(args) -> int:
    _setup()
    from django.core.exceptions import ValidationError

    from corpus.models import Dataset
    from jobs.runner import run_job
    from synth.generation import create_generation_job
    from synth.methods.self_instruct import read_seed_file
    from synth.models import GenerationJob, Provider
    from winnow.cli import _progress_bar

    try:
        config = json.loads(args.config) if args.config else {}
        if not isinstance(config, dict):
            raise ValueError("--config must be a JSON object")
        _merge(config, parse_assignments(args.set))
    except ValueError as exc:
        print(f"winnow generate: {exc}", file=sys.stderr)
        return 2
    if args.seeds:
        config["seed_tasks"] = read_seed_file(Path(args.seeds))
    if args.documents:
        config["documents"] = [{"title": Path(p).name, "text": Path(p).read_text(encoding="utf-8")}
                               for p in args.documents]
    provider = Provider.objects.filter(name=args.provider).first()
    if provider is None:
        names = ", ".join(Provider.objects.values_list("name", flat=True)) or "none yet"
        print(f"winnow generate: unknown provider {args.provider!r} (providers: {names})", file=sys.stderr)
        return 2
    dataset, created = Dataset.objects.get_or_create(name=args.dataset)
    if created:
        print(f"created dataset {dataset.name!r} (id {dataset.pk})")
    try:
        generation = create_generation_job(method=args.method, provider=provider, dataset=dataset, config=config,
                                           enqueue=args.background)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            print(f"winnow generate: {field}: {' '.join(messages)}", file=sys.stderr)
        return 2
    if args.background:
        print(f"queued job {generation.job_id}; follow it with: winnow jobs {generation.job_id} --follow")
        return 0
    bar, echo = _progress_bar(f"{args.method}")
    run_job(generation.job_id, echo=echo)
    bar.close()
    generation = GenerationJob.objects.select_related("job").get(pk=generation.pk)
    return report(generation)


def report(generation) -> int:
    job = generation.job
    rate = f", {generation.tokens_per_second} tokens/s" if generation.tokens_per_second else ""
    line = (f"{generation.records_written} records, {generation.responses_written} responses, "
            f"{generation.feedback_written} feedback, {generation.discarded} discarded; "
            f"{generation.calls} calls, {generation.cache_hits} from cache, "
            f"{generation.prompt_tokens}+{generation.completion_tokens} tokens{rate}, cost {generation.cost:.4f}")
    if job.status == job.Status.SUCCEEDED:
        print(f"job {job.pk} succeeded: {line}")
        return 0
    print(f"job {job.pk} {job.status}: {job.error}\n  {line}", file=sys.stderr)
    return 1


def cmd_provider_list(args) -> int:
    _setup()
    from synth.models import Provider

    print(f"{'name':<20} {'model':<40} {'in flight':>9}  base url")
    for provider in Provider.objects.all():
        print(f"{provider.name:<20} {provider.model[-40:]:<40} {provider.max_concurrency:>9}  {provider.base_url}")
    return 0


def _provider(name):
    from synth.models import Provider

    provider = Provider.objects.filter(name=name).first()
    if provider is None:
        print(f"winnow provider: unknown provider {name!r}", file=sys.stderr)
    return provider


def cmd_provider_health(args) -> int:
    _setup()
    from synth.serving import check_health

    provider = _provider(args.name)
    if provider is None:
        return 2
    result = check_health(provider)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def cmd_provider_try(args) -> int:
    _setup()
    from synth.serving import try_provider

    provider = _provider(args.name)
    if provider is None:
        return 2
    result = try_provider(provider, args.prompt, max_tokens=args.max_tokens)
    print(result["text"] if result["ok"] else f"error: {result['error']}")
    return 0 if result["ok"] else 1


def cmd_provider_serve(args) -> int:
    _setup()
    from django.db.models import Q

    from corpus.models import RegisteredModel
    from synth.serving import start_model_server, wait_until_serving

    query = Q(name=args.model) | (Q(pk=int(args.model)) if args.model.isascii() and args.model.isdigit() else Q())
    model = RegisteredModel.objects.filter(query).first()
    if model is None:
        print(f"winnow provider serve: unknown registered model {args.model!r}", file=sys.stderr)
        return 2
    try:
        server = start_model_server(model, port=args.port)
    except ValueError as exc:
        print(f"winnow provider serve: {exc}", file=sys.stderr)
        return 2
    print(f"serving {model.name} at {server.provider.base_url} as provider {server.provider.name!r} "
          f"(pid {server.pid}, log {server.log_path})")
    if args.wait:
        wait_until_serving(server.provider.base_url)
        print("ready")
    return 0
