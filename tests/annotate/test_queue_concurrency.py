"""The queue under concurrency: N annotator threads, each with its own database connection,
race through M items with overlap k. Afterwards every item has exactly k submissions, no
assignment is doubled and nobody judged an item twice. Runs on SQLite and PostgreSQL (where
the claims use SELECT ... FOR UPDATE SKIP LOCKED)."""

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from annotate import queue
from annotate.models import AnnotationProject, Assignment, Item
from corpus.models import Dataset, Feedback
from winnow.roles import grant_role

from .conftest import make_project, make_records

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threads,items,overlap", [(8, 40, 3)])
def test_exactly_overlap_submissions_per_item(threads, items, overlap):
    creator = get_user_model().objects.create_user(username="boss", password="pw-for-tests-1")
    grant_role(creator, "manager")
    dataset = Dataset.objects.create(name="race")
    make_records(dataset, items, responses=2)
    annotators = []
    for n in range(threads):
        user = get_user_model().objects.create_user(username=f"racer{n}", password="pw-for-tests-1")
        grant_role(user, "annotator")
        annotators.append(user)
    project = make_project(dataset, creator, ("pairwise",), overlap=overlap,
                           members=[(u, "annotator") for u in annotators])
    errors, done = [], Counter()
    start = threading.Barrier(threads)

    def annotate(user):
        try:
            start.wait()
            fresh = AnnotationProject.objects.get(pk=project.pk)
            while True:
                assignment = queue.next_assignment(fresh, user)
                if assignment is None:
                    break
                queue.submit(fresh, user, assignment.item_id, {"better": {"choice": "tie"}},
                             client_key=f"{user.pk}-{assignment.item_id}")
                # a retry of the same request must not double anything
                queue.submit(fresh, user, assignment.item_id, {"better": {"choice": "tie"}},
                             client_key=f"{user.pk}-{assignment.item_id}")
                done[user.username] += 1
        except Exception as exc:  # noqa: BLE001 - reported below with the thread's name
            errors.append(f"{user.username}: {exc!r}")
        finally:
            connections.close_all()

    workers = [threading.Thread(target=annotate, args=(u,)) for u in annotators]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert not errors, errors
    counts = list(Item.objects.filter(project=project).values_list("submitted", "claimed"))
    assert counts == [(overlap, overlap)] * items
    per_item = Counter(Assignment.objects.filter(status="submitted").values_list("item_id", flat=True))
    assert set(per_item.values()) == {overlap} and len(per_item) == items
    pairs = Counter(Assignment.objects.values_list("item_id", "annotator_id"))
    assert max(pairs.values()) == 1
    assert Feedback.objects.count() == items * overlap
    feedback_pairs = Counter((f.provenance["item"], f.author_id) for f in Feedback.objects.all())
    assert max(feedback_pairs.values()) == 1
    assert sum(done.values()) == items * overlap
    if connection.vendor == "postgresql":
        assert len([n for n in done.values() if n]) > 1  # the work really was spread out
