"""`winnow demo`: the whole loop on the embedded default, from seed tasks to a better model.

    seed tasks -> self-instruct prompts -> N responses per prompt (one per system prompt)
    -> curation -> judgement (the bundled model as LLM judge, and a rule judge)
    -> preference snapshot -> DPO with LoRA on the bundled SmolLM2 -> evaluation against the
    base model on the snapshot's held-out prompts -> the trained model served as a provider
    -> one more generation round with it

Every stage is a real job of the app that owns it (synth, curate, corpus, training), run
here, in this process, with a progress bar; the data lands in the same database `winnow run`
serves, so the web UI shows it all afterwards. The target behaviour is one a rule can check
(default `max_sentences:3`: answer in at most three sentences). The responses are asked for
with contrasting system prompts (brief, thorough); the prompts in the snapshot carry no
system prompt, so DPO teaches the model to behave as if it had been asked to be brief.

The report (printed, and written to var/demo/<name>.json) has the figures of every stage and
the trained model's rule-judged win rate over the base model, which is also stored on the
training run.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

WIN_RATE_GOAL = 0.65

# One system prompt per response to each prompt; N responses use the first N.
STYLES = [
    ("brief", "Answer in one or two short sentences. No lists, no preamble."),
    ("thorough", "Answer thoroughly: several paragraphs with details, steps and examples."),
    ("plain", "You are a helpful assistant."),
    ("list", "Answer with a numbered list of points, then a summary."),
]


@dataclass
class DemoOptions:
    prompts: int = 40             # self-instruct prompts to keep
    responses: int = 3            # responses per prompt (one per style, in STYLES order)
    response_tokens: int = 160    # max_tokens of each response
    rule: str = "max_sentences:3"
    test_fraction: float = 0.4    # held-out share of the prompts with a decisive pair
    eval_prompts: int = 16        # held-out prompts the base and trained models answer
    eval_tokens: int = 96
    epochs: float = 2.0
    learning_rate: float = 2e-4
    round_two: int = 8            # prompts answered by the trained model in the last round
    seed: int = 0
    name: str = ""


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)


class DemoFailed(Exception):
    pass


def option_errors(options: DemoOptions) -> list[str]:
    """What is wrong with the options, before anything runs."""
    from training.rewards import is_known_rule

    errors = []
    for name, low in (("prompts", 4), ("eval_prompts", 1), ("response_tokens", 16),
                      ("eval_tokens", 8), ("round_two", 1)):
        if getattr(options, name) < low:
            errors.append(f"--{name.replace('_', '-')} must be at least {low}")
    if not 0 < options.epochs <= 100:
        errors.append("--epochs must be above 0 and at most 100")
    if options.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", options.name):
        errors.append("--name may hold letters, digits, '.', '_' and '-' (it names the dataset and the report file)")
    if not is_known_rule(options.rule):
        errors.append(f"--rule {options.rule!r} is not a known rule (e.g. max_sentences:3)")
    return errors


class Demo:
    def __init__(self, options: DemoOptions, progress_bar, out=print):
        self.options = options
        self.progress_bar = progress_bar  # desc -> (bar, echo(done, total, stage))
        self.out = out
        self.stages: list[Stage] = []
        self.servers = []
        self.stopped: list[int] = []  # pids of the model servers stopped
        self.name = options.name or time.strftime("demo-%Y%m%d-%H%M%S")

    # -- plumbing ----------------------------------------------------------------------------

    def run_job(self, job_id: int, desc: str):
        from jobs.models import Job
        from jobs.runner import run_job

        bar, echo = self.progress_bar(desc)
        try:
            run_job(job_id, echo=echo)
        finally:
            bar.close()
        job = Job.objects.get(pk=job_id)
        if job.status != "succeeded":
            raise DemoFailed(f"{desc}: job {job_id} {job.status}: {job.error}")
        return job

    def stage(self, name: str, func, *args) -> Stage:
        stage = Stage(name)
        started = time.monotonic()
        stage.figures = func(*args) or {}
        stage.seconds = round(time.monotonic() - started, 1)
        self.stages.append(stage)
        shown = ", ".join(f"{k} {v}" for k, v in stage.figures.items() if not isinstance(v, (dict, list)))
        self.out(f"  {name}: {shown} ({stage.seconds:.0f} s)")
        return stage

    def generate(self, method: str, provider, dataset, config: dict, desc: str) -> dict:
        from synth.generation import create_generation_job

        generation = create_generation_job(method=method, provider=provider, dataset=dataset,
                                           config={"seed": self.options.seed, **config}, enqueue=False)
        return self.run_job(generation.job_id, desc).result or {}

    # -- stages ------------------------------------------------------------------------------

    def start_bundled_model(self) -> dict:
        from corpus.bundled_model import register_bundled_model
        from corpus.models import Dataset
        from synth.serving import start_model_server

        if Dataset.objects.filter(name=self.name).exists():
            raise DemoFailed(f"a dataset named {self.name!r} exists; give the demo another --name")
        self.base = register_bundled_model()
        self.dataset = Dataset.objects.create(
            name=self.name, description="winnow demo: the whole loop on the bundled model")
        server = start_model_server(self.base, wait=True)
        self.servers.append(server)
        self.provider = server.provider
        return {"model": self.base.name, "provider": self.provider.name, "dataset": self.dataset.name}

    def self_instruct(self) -> dict:
        result = self.generate("self_instruct", self.provider, self.dataset,
                               {"num_instructions": self.options.prompts}, "self-instruct prompts")
        kept = self.dataset.records.count()
        if kept < 4:
            raise DemoFailed(f"self-instruct kept only {kept} prompts; a preference set needs more")
        return {"prompts": kept, "requests": result.get("calls"), "discarded": result.get("discarded")}

    def respond(self) -> dict:
        figures = {}
        for style, system in STYLES[: self.options.responses]:
            result = self.generate(
                "responses", self.provider, self.dataset,
                {"system_prompt": system, "samples_per_temperature": 1, "temperatures": [0.7],
                 "params": {"max_tokens": self.options.response_tokens}},
                f"responses ({style})")
            figures[f"{style} responses"] = result.get("responses")
        figures["completion tokens"] = self._completion_tokens()
        return figures

    def _completion_tokens(self) -> int:
        from synth.models import GenerationJob

        return sum(GenerationJob.objects.filter(dataset=self.dataset)
                   .values_list("completion_tokens", flat=True))

    def curate(self) -> dict:
        from curate.runs import start_run

        # Long answers that hit max_tokens are kept: they are the rejected side of the pairs.
        pipeline = [{"step": "quality", "config": {"drop_truncated": False}},
                    {"step": "exact_dedup"}, {"step": "near_dedup"}, {"step": "pii"}]
        run = start_run(self.dataset, pipeline, enqueue=False)
        self.run_job(run.job_id, "curation")
        run.refresh_from_db()
        totals = (run.report or {}).get("totals", {})
        return {"kept records": self.dataset.records.filter(status="kept").count(), **totals}

    def judge(self) -> dict:
        from synth.rulejudge import judge_dataset

        llm = self.generate("judge", self.provider, self.dataset,
                            {"mode": "pairwise", "model_responses_only": True,
                             "max_pairs_per_record": 1,
                             # "Choice: A" comes first; the rationale may be cut short
                             "params": {"max_tokens": 24}}, "LLM judge")
        rule = judge_dataset(self.dataset, self.options.rule)
        agreement = _judge_agreement(self.dataset, self.options.rule)
        self.stop_servers()  # an idle `transformers serve` still spins a core; training needs both
        return {"LLM judgements": llm.get("feedback"), "rule judgements": rule["feedback"],
                "rule decisive pairs": rule["decisive"], **agreement}

    def snapshot(self) -> dict:
        from corpus.snapshots.job import start_snapshot_build

        recipe = {
            "name": f"{self.name} preferences", "kind": "preference",
            "sources": {"datasets": [self.dataset.name]},
            "filters": {"feedback_source": "model"},
            # Every pairwise vote counts: the rule judge's two (both orders) and the LLM
            # judge's two. The LLM judge can overturn the rule only by being consistent under
            # a swap; a 2:2 split is a tie and dropped.
            "policies": {"signals": ["pairwise"], "aggregation": "majority", "ties": "drop"},
            "split": {"test_fraction": self.options.test_fraction, "seed": self.options.seed},
            "output": {"format": "chat"},
        }
        self.snap = start_snapshot_build(recipe, enqueue=False)
        self.run_job(self.snap.job_id, "preference snapshot")
        self.snap.refresh_from_db()
        counts = self.snap.counts
        if counts.get("train", 0) < 2 or counts.get("test", 0) < 1:
            raise DemoFailed(f"the snapshot has {counts}: too few decisive pairs to train and evaluate")
        return {"train pairs": counts.get("train"), "test pairs": counts.get("test")}

    def train(self) -> dict:
        from training.services import start_run

        options = self.options
        config = {
            "epochs": options.epochs, "learning_rate": options.learning_rate, "batch_size": 4,
            "max_length": 256, "save_steps": 1000, "merge_adapter": True,
            "judge_rule": options.rule, "generation_eval_prompts": options.eval_prompts,
            "generation_max_new_tokens": options.eval_tokens, "seed": options.seed,
        }
        self.run = start_run(method="dpo", mode="lora", base_model=self.base, snapshot=self.snap,
                             config=config, name=f"{self.name} dpo", enqueue=False)
        self.run_job(self.run.job_id, "DPO (LoRA)")
        self.run.refresh_from_db()
        generation = (self.run.evaluation or {}).get("generation") or {}
        losses = list(self.run.metrics.filter(split="train", loss__isnull=False)
                      .order_by("step").values_list("loss", flat=True))
        return {
            "run": self.run.pk, "steps": self.run.step,
            "first loss": round(losses[0], 4) if losses else None,
            "last loss": round(losses[-1], 4) if losses else None,
            "held-out prompts": generation.get("prompts"), "wins": generation.get("wins"),
            "losses": generation.get("losses"), "ties": generation.get("ties"),
            "win rate": self.run.win_rate,
            "base rule score": _round(generation.get("base_rule_score")),
            "trained rule score": _round(generation.get("trained_rule_score")),
        }

    def serve_trained(self) -> dict:
        from synth.serving import start_model_server

        model = self.run.merged_model
        if model is None:
            raise DemoFailed(f"training run {self.run.pk} wrote no merged model to serve")
        server = start_model_server(model, wait=True)
        self.servers.append(server)
        self.trained_provider = server.provider
        return {"model": model.name, "provider": self.trained_provider.name}

    def round_two(self) -> dict:
        from corpus.models import Record
        from training.rewards import rule_score

        held_out = _held_out_record_ids(self.snap)[: self.options.round_two]
        if not held_out:
            held_out = list(Record.objects.filter(dataset=self.dataset, status="kept")
                            .order_by("id").values_list("pk", flat=True)[: self.options.round_two])
        result = self.generate(
            "responses", self.trained_provider, self.dataset,
            {"record_ids": held_out, "samples_per_temperature": 1, "temperatures": [0.7],
             "params": {"max_tokens": self.options.response_tokens}},
            "round two (trained model)")
        texts = list(self._responses_of(self.trained_provider, held_out))
        n = max(len(texts), 1)
        score = sum(rule_score(self.options.rule, t) for t in texts) / n
        # A short way to follow a length rule is to refuse: show how often the model does.
        refusals = sum(1 for t in texts if rule_score("no_apology", t) == 0)
        return {"responses": result.get("responses"), "rule score": round(score, 3),
                "refusing or apologising": refusals}

    def stop_servers(self) -> None:
        from synth.serving import stop_model_server

        for server in self.servers:
            if server.pk is not None:
                stop_model_server(server)
                self.stopped.append(server.pid)

    def _responses_of(self, provider, record_ids):
        from corpus.models import Response

        return Response.objects.filter(record_id__in=record_ids,
                                       provenance__provider=provider.pk).values_list("text", flat=True)

    # -- the whole loop ----------------------------------------------------------------------

    def run_all(self) -> dict:
        started = time.monotonic()
        self.out(f"winnow demo {self.name}: rule {self.options.rule!r}, goal win rate >= {WIN_RATE_GOAL:.0%}")
        try:
            self.stage("bundled model served", self.start_bundled_model)
            self.stage("self-instruct", self.self_instruct)
            self.stage("responses", self.respond)
            self.stage("curation", self.curate)
            self.stage("judgement", self.judge)
            self.stage("snapshot", self.snapshot)
            self.stage("DPO LoRA + evaluation", self.train)
            self.stage("trained model served", self.serve_trained)
            self.stage("round two", self.round_two)
        finally:
            self.stop_servers()
        win_rate = self.run.win_rate
        report = {
            "name": self.name, "options": asdict(self.options),
            "minutes": round((time.monotonic() - started) / 60, 1),
            "win_rate": win_rate, "goal": WIN_RATE_GOAL,
            "goal_met": win_rate is not None and win_rate >= WIN_RATE_GOAL,
            "model_servers": self.stopped,
            "training_run": self.run.pk, "snapshot": self.snap.pk, "dataset": self.dataset.pk,
            "stages": [asdict(s) for s in self.stages],
        }
        return report


def _round(value):
    return None if value is None else round(value, 3)


def _held_out_record_ids(snapshot) -> list[int]:
    """The records behind the snapshot's test split, from its lineage file."""
    path = Path(snapshot.directory) / "lineage.jsonl"
    ids = []
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("split") == "test" and row.get("record") not in ids:
                    ids.append(row["record"])
    return ids


def _judge_agreement(dataset, rule: str) -> dict:
    """How the two judges relate on the same pairs: the LLM judge's consistency under a swap,
    and how often its verdict matches the rule's."""
    from corpus.models import Feedback

    verdicts: dict[tuple, dict[str, list[str]]] = {}
    for fb in Feedback.objects.filter(record__dataset=dataset, kind="pairwise", author_kind="model"):
        judge = "rule" if (fb.provenance or {}).get("method") == "rule_judge" else "llm"
        key = (fb.payload["a"], fb.payload["b"])
        verdicts.setdefault(key, {}).setdefault(judge, []).append(fb.payload["choice"])
    consistent = agree = both = 0
    for votes in verdicts.values():
        llm, by_rule = votes.get("llm", []), votes.get("rule", [])
        if len(llm) == 2 and llm[0] == llm[1]:
            consistent += 1
        if llm and by_rule and by_rule[0] != "tie":
            both += 1
            agree += sum(1 for choice in llm if choice == by_rule[0]) / len(llm)
    judged = sum(1 for v in verdicts.values() if len(v.get("llm", [])) == 2)
    return {
        "LLM consistent under swap": round(consistent / judged, 3) if judged else None,
        "LLM agrees with rule": round(agree / both, 3) if both else None,
    }


def format_report(report: dict) -> str:
    lines = [f"winnow demo {report['name']}: {report['minutes']} min"]
    for stage in report["stages"]:
        figures = ", ".join(f"{k} {v}" for k, v in stage["figures"].items())
        lines.append(f"  {stage['name']:<24} {stage['seconds']:>7.0f} s  {figures}")
    rate = report["win_rate"]
    shown = "n/a" if rate is None else f"{rate:.1%}"
    lines.append(f"win rate of the trained model over the base (rule {report['options']['rule']!r}, "
                 f"held-out prompts): {shown}  (goal {report['goal']:.0%}: "
                 f"{'met' if report['goal_met'] else 'not met'})")
    lines.append(f"training run {report['training_run']} (see /training/{report['training_run']}/), "
                 f"snapshot {report['snapshot']}, dataset {report['dataset']}")
    return "\n".join(lines)
