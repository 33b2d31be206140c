"""Record and response text is untrusted. Script and HTML payloads are imported (prompts,
responses, metadata, names, guidelines) and every page that shows them is opened in headless
Chromium: no payload may run, and none may turn into an element or a javascript: link."""

import json
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from annotate.models import AnnotationProject, ProjectMember
from annotate.questions import normalise_questions
from annotate.setup import build_items, normalise_filter
from corpus.importing import KIND, ImportRequest
from corpus.models import Dataset, Record, RegisteredModel, Snapshot
from jobs.models import Job
from jobs.runner import create_job, run_job
from tests.e2e.conftest import wait_for
from tests.e2e.test_user_journey import chromium_driver
from training.models import TrainingMetric, TrainingRun

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a long test password"

# Each payload, if the page treated it as HTML, would set window.__xss, or leave in the DOM an
# element carrying data-xss, a javascript: link, or an element made from the payload's tags (a
# sanitiser may strip data-xss but keep <b>: still HTML from the data, so still a failure).
PAYLOADS = [
    "<script>window.__xss = 'script'</script>",
    '<img src="x" data-xss onerror="window.__xss = \'img\'">',
    '<svg data-xss onload="window.__xss = \'svg\'"></svg>',
    '"><b data-xss>broke out of an attribute</b>',
    "'><iframe data-xss srcdoc=\"<script>parent.__xss='iframe'</script>\"></iframe>",
    "[a markdown link](javascript:window.__xss='md-link')",
    '<a href="javascript:window.__xss=\'a\'" data-xss>a raw link</a>',
    "</textarea></script><details data-xss open ontoggle=\"window.__xss='details'\">",
]
PAYLOAD = " ".join(PAYLOADS)

DETECT = """
return {
  ran: window.__xss === undefined ? null : String(window.__xss),
  elements: document.querySelectorAll('[data-xss]').length,
  links: [...document.querySelectorAll('a[href], iframe[src]')]
         .filter(n => /^\\s*javascript:/i.test(n.getAttribute('href') || n.getAttribute('src'))).length,
  rendered: [...document.querySelectorAll('b, strong, a, script')].filter(n =>
    ['broke out of an attribute', 'a raw link'].includes(n.textContent.trim()) ||
    (n.tagName === 'SCRIPT' && n.type !== 'application/json' && n.textContent.includes('__xss'))).map(n => n.parentNode.outerHTML.slice(0, 300)),
  text: document.body.innerText,
};
"""


@pytest.fixture
def planted(live_server, django_user_model, tmp_path):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    dataset = Dataset.objects.create(name=f"ds {PAYLOADS[1]}", description=PAYLOAD)
    rows = [{"id": f"x{n}", "prompt": f"Prompt {n}: {PAYLOAD}",
             "chosen": f"Chosen:\n\n{PAYLOAD}\n\n```html\n{PAYLOADS[0]}\n```",
             "rejected": f"Rejected: {PAYLOAD}", "metadata": {"note": PAYLOAD, PAYLOADS[3]: 1}}
            for n in range(3)]
    source = tmp_path / "payloads.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    job = create_job(KIND, params=ImportRequest(dataset_id=dataset.pk, path=str(source),
                                                filename=source.name, source=PAYLOADS[2]).as_params(),
                     subject=f"dataset:{dataset.pk}", enqueue=False)
    job = run_job(job.pk)
    assert job.status == "succeeded", job.error
    assert Record.objects.filter(dataset=dataset).count() == 3

    project = AnnotationProject.objects.create(
        name=f"project {PAYLOADS[3]}", dataset=dataset, guidelines=f"## Rules\n{PAYLOAD}",
        questions=normalise_questions([
            {"name": "better", "kind": "pairwise", "title": f"Which? {PAYLOADS[1]}"},
            {"name": "notes", "kind": "comment", "title": "Notes"}]),
        record_filter=normalise_filter({}), overlap=1, created_by=admin)
    ProjectMember.objects.create(project=project, user=admin, role="manager")
    build_items(project)

    base = RegisteredModel.objects.create(name=f"model {PAYLOADS[3]}", origin="local", path="/nonexistent")
    snapshot = Snapshot.objects.create(name=f"snap {PAYLOADS[1]}", kind="preference")
    run = TrainingRun.objects.create(name=f"run {PAYLOADS[0]}", method="dpo", base_model=base, snapshot=snapshot,
                                     status="failed", error=PAYLOAD, win_rate=0.5,
                                     evaluation={"generation": {"samples": [{"prompt": PAYLOAD, "base": PAYLOAD,
                                                                             "trained": PAYLOAD}]}})
    TrainingMetric.objects.create(run=run, step=1, loss=0.5)
    Job.objects.create(kind="synth.generate", subject=PAYLOADS[3], status="failed", error=PAYLOAD)
    record = Record.objects.filter(dataset=dataset).first()
    return {"dataset": dataset, "project": project, "run": run, "record": record, "job": job}


def sign_in(browser, base):
    browser.get(f"{base}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD + "\n")
    wait_for(lambda: "Site administration" in browser.page_source, what="the admin index")


def test_detector_sees_a_payload_that_does_render(live_server):
    """The check below can fail: the same payloads inserted as HTML are caught."""
    browser = chromium_driver()
    try:
        browser.get(f"{live_server.url}/login/")
        browser.execute_script("document.body.insertAdjacentHTML('beforeend', arguments[0])", PAYLOAD)
        found = wait_for(lambda: (d := browser.execute_script(DETECT))["ran"] and d, what="the onerror to run")
        assert found["elements"] >= 4 and found["links"] == 1 and len(found["rendered"]) >= 3
    finally:
        browser.quit()


def test_no_page_runs_or_renders_planted_markup(live_server, planted):
    base = live_server.url
    dataset, project, run, record = planted["dataset"], planted["project"], planted["run"], planted["record"]
    # (page, whether it shows a planted payload as text: a page that shows none proves nothing)
    pages = {
        "home": ("/", True),
        "admin datasets": ("/admin/corpus/dataset/", True),
        "admin records": (f"/admin/corpus/record/?dataset__id__exact={dataset.pk}", True),
        "admin record": (f"/admin/corpus/record/{record.pk}/change/", True),
        "admin responses": ("/admin/corpus/response/", True),
        "admin feedback": ("/admin/corpus/feedback/", False),
        "admin job": (f"/admin/jobs/job/{planted['job'].pk}/change/", True),
        "browsable API records": (f"/api/v1/datasets/{dataset.pk}/records", True),
        "browsable API record": (f"/api/v1/records/{record.pk}", True),
        "annotation projects": ("/annotate/", True),
        "workbench": (f"/annotate/{project.pk}/", True),
        "project manager page": (f"/annotate/{project.pk}/manage", True),
        "review": (f"/annotate/{project.pk}/review", True),
        "training runs": ("/training/", True),
        "training run": (f"/training/{run.pk}/", True),
    }
    browser = chromium_driver()
    try:
        sign_in(browser, base)
        for name, (path, shows) in pages.items():
            browser.get(base + path)
            if name == "workbench":
                wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".response"), what="the item")
            elif name == "training run":
                wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#loss polyline"), what="the loss curve")
            browser.execute_script("return new Promise(r => setTimeout(r, 300))")  # let onerror/onload fire
            found = browser.execute_script(DETECT)
            assert (found["ran"], found["elements"], found["links"], found["rendered"]) == (None, 0, 0, []), \
                (name, found["ran"])
            if shows:
                assert "data-xss" in found["text"] or "<script>" in found["text"], f"{name}: payload not shown"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.get(f"{base}/annotate/{project.pk}/")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".response"), what="the item")
        browser.save_screenshot(str(SCREENSHOTS / "untrusted-workbench.png"))
    finally:
        browser.quit()
