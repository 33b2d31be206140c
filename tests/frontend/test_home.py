"""The home page: the loop's stages with their counts, the jobs, and the rounds with their plots."""

import re

import pytest
from django.test import Client
from django.utils import timezone

from corpus.models import AuthorKind, Dataset, Feedback, Record, RegisteredModel, Response, Snapshot
from jobs.models import Job
from training.models import TrainingMetric, TrainingRun

pytestmark = pytest.mark.django_db


def page(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    return response.content.decode()


def figure(html: str, stage: str) -> int:
    match = re.search(rf'<span class="label">{stage}</span>\s*<span class="figure">(\d+)</span>', html)
    assert match, f"no {stage} stage on the page"
    return int(match.group(1))


def finished_run(base, snapshot, name, losses, win_rate, minute):
    run = TrainingRun.objects.create(name=name, method="dpo", base_model=base, snapshot=snapshot,
                                     status=TrainingRun.Status.SUCCEEDED, win_rate=win_rate,
                                     finished_at=timezone.now().replace(minute=minute))
    TrainingMetric.objects.bulk_create(TrainingMetric(run=run, step=step, loss=loss)
                                       for step, loss in enumerate(losses, start=1))
    TrainingMetric.objects.create(run=run, step=len(losses), split=TrainingMetric.Split.SUMMARY, loss=9.9)
    return run


def test_anonymous_users_log_in_and_annotators_go_to_their_workbench(users):
    assert Client().get("/").status_code == 302
    client = Client()
    client.force_login(users["annotator"])
    response = client.get("/")
    assert response.status_code == 302 and response.url == "/annotate/"


def test_an_empty_install_says_what_to_do_first(users):
    html = page(users["manager"])
    assert figure(html, "Prompts") == 0 and figure(html, "Training runs") == 0
    assert "no finished runs yet" in html and "no evaluated runs yet" in html
    assert "winnow import FILE" in html


def test_the_loop_counts_each_stage_and_plots_the_rounds(users):
    dataset = Dataset.objects.create(name="loop")
    records = Record.objects.bulk_create(Record(dataset=dataset, prompt=f"q{i}") for i in range(3))
    Record.objects.filter(pk=records[0].pk).update(status="dropped")
    a, b = (Response.objects.create(record=records[1], text=t, author_kind=AuthorKind.MODEL) for t in "ab")
    Response.objects.create(record=records[1], text="mine", author_kind=AuthorKind.HUMAN)
    Feedback.objects.create(record=records[1], kind="pairwise", author_kind=AuthorKind.MODEL,
                            payload={"chosen": a.pk, "rejected": b.pk})
    base = RegisteredModel.objects.create(name="base", origin=RegisteredModel.Origin.LOCAL, path="/m")
    snapshot = Snapshot.objects.create(name="prefs", kind="preference")
    finished_run(base, snapshot, "round two", [0.69, 0.40, 0.27], 0.8, minute=30)
    finished_run(base, snapshot, "round one", [0.69, 0.55], 0.5, minute=10)
    TrainingRun.objects.create(method="sft", base_model=base, snapshot=snapshot)  # queued: not a round
    Job.objects.create(kind="synth.generate", status=Job.Status.RUNNING, progress_done=3, progress_total=12)
    Job.objects.create(kind="corpus.import", status=Job.Status.FAILED, error="line 4: not JSON")

    html = page(users["manager"])
    assert figure(html, "Prompts") == 3 and "2 kept · 1 dropped" in html
    assert figure(html, "Responses") == 3 and "2 by models · 1 by people" in html
    assert figure(html, "Judgements") == 1 and "0 by people · 1 by judges" in html
    assert figure(html, "Training runs") == 3 and "2 succeeded" in html
    assert "synth.generate" in html and "line 4: not JSON" in html

    # Rounds are numbered by when they finished; the table lists the newest first, with the
    # last training loss (not the summary line's) and the win rate.
    rows = re.findall(r"<tr>\s*<td>(\d)</td>\s*<td><a [^>]*>#\d+ ([^<]+)</a>", html)
    assert rows == [("2", "round two"), ("1", "round one")]
    assert "0.270" in html and "80%" in html and "50%" in html
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 2 and all(svg.count("<circle") == 2 for svg in svgs)
    assert "1: 0.550" in svgs[0] and "2: 0.270" in svgs[0]
    assert "1: 0.500" in svgs[1] and "2: 0.800" in svgs[1]
