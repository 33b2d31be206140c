"""A new user's journey against a real `winnow run`: gunicorn + worker on the test database,
driven over HTTP with requests and in headless Chromium."""

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token

from corpus.models import Record
from tests.e2e.conftest import free_port, wait_for
from winnow.roles import grant_role

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOLLY_ROWS = [
    {"instruction": "When did Virgin Australia start operating?",
     "context": "Virgin Australia commenced services on 31 August 2000.",
     "response": "Virgin Australia started on 31 August 2000.", "category": "closed_qa"},
    {"instruction": "Which is a species of fish? Tope or Rope", "context": "", "response": "Tope",
     "category": "classification"},
    {"instruction": "Why can camels survive long without water?", "context": "",
     "response": "They store fat in their humps.", "category": "open_qa"},
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def server(processes):
    port = free_port()
    proc = processes.start(sys.executable, "-m", "winnow.cli", "run", "--port", str(port),
                           "--web-workers", "1", log="server")
    base = f"http://127.0.0.1:{port}"

    processes.wait_serving(proc, f"{base}/api/schema/", log="server", timeout=90)
    yield base, proc


def manager(django_user_model, name="maria"):
    user = django_user_model.objects.create_user(username=name, password="correct horse battery")
    grant_role(user, "manager")
    return user


def test_import_over_http_and_watch_the_job(server, django_user_model, tmp_path, processes):
    base, proc = server
    token = Token.objects.create(user=manager(django_user_model)).key
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"

    created = http.post(f"{base}/api/v1/datasets", json={"name": "dolly", "description": "from the API"})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    body = "\n".join(json.dumps(row) for row in DOLLY_ROWS).encode()
    queued = http.post(f"{base}/api/v1/datasets/{dataset_id}/import",
                       files={"file": ("dolly.jsonl", body)}, data={"skip_invalid": "false"})
    assert queued.status_code == 202, queued.text
    job_url = f"{base}{queued.headers['Location']}"

    job = wait_for(lambda: (j := http.get(job_url).json())["status"] in ("succeeded", "failed") and j,
                   timeout=60, what="the import job")
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == job["progress"]["total"] == 3

    page = http.get(f"{base}/api/v1/datasets/{dataset_id}/records?metadata.category=open_qa").json()
    assert [r["prompt"] for r in page["results"]] == ["Why can camels survive long without water?"]
    assert page["results"][0]["responses"][0]["text"] == "They store fat in their humps."

    bad = http.post(f"{base}/api/v1/datasets/{dataset_id}/records", json={"history": "nope"})
    assert bad.status_code == 400 and bad.json()["errors"]
    assert requests.get(f"{base}/api/v1/datasets").status_code == 401

    docs = requests.get(f"{base}/api/docs/")
    assert docs.status_code == 200
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        src = f"/static/drf_spectacular_sidecar/swagger-ui-dist/{asset}"
        assert src in docs.text
        assert requests.get(f"{base}{src}").status_code == 200
    assert requests.get(f"{base}/static/admin/css/base.css").status_code == 200

    proc.send_signal(signal.SIGINT)  # Ctrl-C stops the server and the worker it started
    assert proc.wait(timeout=30) == 0
    log = processes.log("server")
    assert "started web" in log and "started worker" in log and "stopping" in log


def chromium_driver():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_browse_records_in_the_admin_and_swagger_ui(server, django_user_model, tmp_path):
    from selenium.webdriver.common.by import By

    base, _ = server
    user = manager(django_user_model, "ada")
    user.is_staff = True
    user.save()
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["corpus", "jobs"]))
    from corpus.models import Dataset

    dataset = Dataset.objects.create(name="browsable")
    Record.objects.create(dataset=dataset, prompt="Which is a species of fish? Tope or Rope",
                          metadata={"category": "classification"})

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = chromium_driver()
    try:
        browser.get(f"{base}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("ada")
        browser.find_element(By.NAME, "password").send_keys("correct horse battery")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(lambda: "Site administration" in browser.page_source, timeout=20, what="admin index")

        browser.get(f"{base}/admin/corpus/record/")
        assert "Which is a species of fish? Tope or Rope" in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "admin-records.png"))

        browser.get(f"{base}/")
        assert "The loop" in browser.page_source and "Browsable API" in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "home.png"))

        browser.get(f"{base}/api/docs/")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock"), timeout=30,
                 what="Swagger UI to render the operations")
        paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert "/api/v1/datasets/{id}/import" in paths
        browser.save_screenshot(str(SCREENSHOTS / "swagger-ui.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # nothing failed to load: no CDN, no missing asset
    finally:
        browser.quit()


def test_children_die_with_a_killed_supervisor(server, processes):
    """`winnow run` SIGKILLed (no chance to clean up) must not leave orphans behind."""
    import os

    import psutil

    _, proc = server
    children = psutil.Process(proc.pid).children()
    assert len(children) == 3  # web, worker, and the bundled model's server (synth)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
