"""What the home page shows: the loop's stages with their counts, the jobs, and the latest runs.

Every figure is one aggregate query (a COUNT or a GROUP BY over a small set of values); on a
corpus of millions of rows they are table scans of a few hundred milliseconds at most.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, OuterRef, Q, Subquery

from annotate.models import AnnotationProject, Assignment
from corpus.models import AuthorKind, Dataset, Feedback, Record, RegisteredModel, Response, Snapshot
from curate.models import CurationDecision, CurationRun
from jobs.models import Job
from synth.models import GenerationJob
from training.models import TrainingMetric, TrainingRun


@dataclass
class Stage:
    name: str
    count: int
    detail: str
    link: str


def _split(queryset, field: str) -> dict[str, int]:
    return {row[field]: row["n"] for row in queryset.values(field).annotate(n=Count("id")).order_by()}


def stages() -> list[Stage]:
    """One entry per step of the loop, in the order data flows through them."""
    responses = _split(Response.objects.all(), "author_kind")
    feedback = _split(Feedback.objects.all(), "author_kind")
    records = _split(Record.objects.all(), "status")
    curation = CurationRun.objects.aggregate(
        runs=Count("id"), reverted=Count("id", filter=Q(status=CurationRun.Status.REVERTED)))
    dropped = CurationDecision.objects.filter(run__status=CurationRun.Status.SUCCEEDED).count()
    assignments = _split(Assignment.objects.all(), "status")
    snapshots = _split(Snapshot.objects.all(), "status")
    runs = _split(TrainingRun.objects.all(), "status")
    models = _split(RegisteredModel.objects.all(), "origin")
    generations = GenerationJob.objects.count()
    return [
        Stage("Datasets", Dataset.objects.count(), f"{generations} generation jobs", "/admin/corpus/dataset/"),
        Stage("Prompts", sum(records.values()),
              f"{records.get('kept', 0)} kept · {records.get('dropped', 0)} dropped", "/admin/corpus/record/"),
        Stage("Responses", sum(responses.values()),
              f"{responses.get(AuthorKind.MODEL, 0)} by models · {responses.get(AuthorKind.HUMAN, 0)} by people",
              "/admin/corpus/response/"),
        Stage("Curation runs", curation["runs"],
              f"{dropped} decisions in force · {curation['reverted']} reverted", "/admin/curate/curationrun/"),
        Stage("Judgements", sum(feedback.values()),
              f"{feedback.get(AuthorKind.HUMAN, 0)} by people · {feedback.get(AuthorKind.MODEL, 0)} by judges",
              "/admin/corpus/feedback/"),
        Stage("Annotation", AnnotationProject.objects.count(),
              f"projects · {assignments.get(Assignment.Status.SUBMITTED, 0)} submissions", "/annotate/"),
        Stage("Snapshots", snapshots.get(Snapshot.Status.READY, 0),
              f"ready · {snapshots.get(Snapshot.Status.BUILDING, 0)} building", "/admin/corpus/snapshot/"),
        Stage("Training runs", sum(runs.values()),
              f"{runs.get(TrainingRun.Status.SUCCEEDED, 0)} succeeded · {runs.get(TrainingRun.Status.RUNNING, 0)} running",
              "/training/"),
        Stage("Models", sum(models.values()),
              f"{models.get(RegisteredModel.Origin.TRAINED, 0)} trained here", "/admin/corpus/registeredmodel/"),
    ]


def jobs(limit: int = 10) -> list[Job]:
    """The jobs queued or running, then the latest finished ones."""
    active = [Job.Status.QUEUED, Job.Status.RUNNING]
    return (list(Job.objects.filter(status__in=active).order_by("-id")[:limit])
            + list(Job.objects.exclude(status__in=active).order_by("-id")[:limit]))


def rounds(limit: int = 50) -> list[dict]:
    """The finished runs, oldest first: one round of the loop each, with its last training loss
    and its evaluation (the rule-judged win rate over the base model)."""
    last_loss = (TrainingMetric.objects.filter(run=OuterRef("pk"), split=TrainingMetric.Split.TRAIN,
                                               loss__isnull=False)
                 .order_by("-step").values("loss")[:1])
    runs = list(TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED)
                .annotate(last_loss=Subquery(last_loss))
                .select_related("snapshot", "base_model").order_by("-finished_at", "-id")[:limit])[::-1]
    return [{"round": index, "run": run, "loss": run.last_loss, "win_rate": run.win_rate}
            for index, run in enumerate(runs, start=1)]
