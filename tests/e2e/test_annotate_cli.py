"""`winnow annotate-demo` and `winnow annotate-status` as a user runs them."""

import pytest

from annotate import queue
from annotate.models import AnnotationProject
from tests.e2e.test_cli import winnow

pytestmark = [pytest.mark.e2e]


def test_demo_then_status(processes):
    made = winnow(processes, "annotate-demo", "--password", "a long demo password")
    assert made.returncode == 0, made.stderr
    assert "Pairwise preferences" in made.stdout
    project = AnnotationProject.objects.get(name="Pairwise preferences")
    from django.contrib.auth import get_user_model

    for name, choice in (("ann", "a"), ("bob", "b")):
        user = get_user_model().objects.get(username=name)
        assignment = queue.next_assignment(project, user)
        answer = choice if assignment.response_order[0] == min(assignment.response_order) else "ab".replace(choice, "")
        queue.submit(project, user, assignment.item_id, {"better": {"choice": answer}})
    listed = winnow(processes, "annotate-status")
    assert listed.returncode == 0 and "Pairwise preferences" in listed.stdout
    shown = winnow(processes, "annotate-status", str(project.pk))
    assert shown.returncode == 0, shown.stderr
    assert "2/" in shown.stdout and "ann" in shown.stdout and "question better (pairwise)" in shown.stdout
    assert "agreement 0.000" in shown.stdout
    missing = winnow(processes, "annotate-status", "9999")
    assert missing.returncode == 2 and "no project 9999" in missing.stderr
