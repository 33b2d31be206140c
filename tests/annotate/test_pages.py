"""The workbench and manager pages: who may open which, and what they render."""

import pytest
from django.test import Client

from annotate import queue
from annotate.models import Item

from .conftest import make_project


@pytest.fixture
def site(corpus_dataset, users, annotators):
    (ann, _), (bob, _), (rita, _), (outsider, _) = annotators[:4]
    project = make_project(corpus_dataset, users["manager"], ("rating", "comment"), overlap=2,
                           members=[(ann, "annotator"), (bob, "annotator"), (rita, "reviewer")],
                           guidelines="## Rules\n<script>alert(1)</script>Be **fair**.")
    for user, value in ((ann, 2), (bob, 5)):
        assignment = queue.next_assignment(project, user)
        cells = [{"response": r, "aspect": "helpfulness", "value": value} for r in assignment.response_order]
        cells += [{"response": r, "aspect": "honesty", "value": value} for r in assignment.response_order]
        queue.submit(project, user, assignment.item_id, {"quality": cells, "notes": {"text": "hm"}})
    return project, users, ann, rita, outsider


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_a_login():
    response = Client().get("/annotate/")
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert Client().get("/login/").status_code == 200


def test_annotator_pages(site):
    project, users, ann, rita, outsider = site
    client = browser(ann)
    listing = client.get("/annotate/")
    assert listing.status_code == 200 and project.name.encode() in listing.content
    page = client.get(f"/annotate/{project.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "workbench.js" in html and "bench-config" in html
    assert "<script>alert(1)</script>" not in html and "<strong>fair</strong>" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert client.get(f"/annotate/{project.pk}/manage").status_code == 403
    assert client.get(f"/annotate/{project.pk}/review").status_code == 403
    assert client.get("/annotate/new").status_code == 403
    assert browser(outsider).get(f"/annotate/{project.pk}/").status_code == 403
    assert project.name.encode() not in browser(outsider).get("/annotate/").content


def test_manager_and_reviewer_pages(site):
    project, users, ann, rita, outsider = site
    manager = browser(users["manager"])
    dashboard = manager.get(f"/annotate/{project.pk}/manage")
    assert dashboard.status_code == 200
    html = dashboard.content.decode()
    assert "<svg" in html and "ratings given" in html and "Krippendorff" in html
    assert ann.username in html
    assert manager.get("/annotate/new").status_code == 200
    review = browser(rita).get(f"/annotate/{project.pk}/review")
    assert review.status_code == 200
    body = review.content.decode()
    assert f"Item {Item.objects.filter(submitted=2).get().pk}" in body  # 2 vs 5: a disagreement
    assert "helpfulness=2" in body and "helpfulness=5" in body
    assert browser(rita).get(f"/annotate/{project.pk}/manage").status_code == 200


def test_home_links_the_workbench(users):
    assert b'href="/annotate/"' in browser(users["manager"]).get("/").content
