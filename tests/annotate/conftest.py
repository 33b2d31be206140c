"""Fixtures for annotation tests: a dataset of records with model responses, a project
factory, and annotators with API clients."""

import pytest
from django.contrib.auth import get_user_model

from annotate.models import AnnotationProject, ProjectMember
from annotate.questions import normalise_questions
from annotate.setup import build_items, normalise_filter
from corpus.models import AuthorKind, Dataset, Record, Response
from tests.conftest import token_client
from winnow.roles import grant_role

QUESTIONS = {
    "rating": {"name": "quality", "kind": "rating", "scale": 5, "aspects": ["helpfulness", "honesty"]},
    "ranking": {"name": "order", "kind": "ranking"},
    "pairwise": {"name": "better", "kind": "pairwise"},
    "binary": {"name": "ok", "kind": "binary"},
    "edit": {"name": "fix", "kind": "edit"},
    "comment": {"name": "notes", "kind": "comment"},
}


def make_records(dataset, count: int, responses: int = 2, **fields):
    records = []
    for n in range(count):
        record = Record.objects.create(dataset=dataset, prompt=f"Question {n}: why is the sky blue?", **fields)
        for r in range(responses):
            Response.objects.create(record=record, text=f"Answer {r} to {n}: Rayleigh scattering, {'short' if r else 'long'}.",
                                    author_kind=AuthorKind.MODEL, model_name=f"model-{r}")
        records.append(record)
    return records


@pytest.fixture
def corpus_dataset(users):
    dataset = Dataset.objects.create(name="to-judge", owner=users["manager"])
    make_records(dataset, 6, responses=3)
    return dataset


def make_project(dataset, creator, kinds=("pairwise",), overlap=1, members=(), **fields):
    project = AnnotationProject.objects.create(
        name=fields.pop("name", f"p-{'-'.join(kinds)}-{AnnotationProject.objects.count()}"),
        dataset=dataset, questions=normalise_questions([QUESTIONS[k] for k in kinds]),
        record_filter=normalise_filter(fields.pop("record_filter", {})), overlap=overlap,
        created_by=creator, **fields,
    )
    ProjectMember.objects.create(project=project, user=creator, role="manager")
    for user, role in members:
        ProjectMember.objects.create(project=project, user=user, role=role)
    build_items(project)
    return project


@pytest.fixture
def annotators(db):
    """Five annotators (global role annotator) with token clients."""
    out = []
    for n in range(5):
        user = get_user_model().objects.create_user(username=f"ann{n}", password="pw-for-tests-1")
        grant_role(user, "annotator")
        out.append((user, token_client(user)))
    return out
