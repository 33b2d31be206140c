"""Curation as a new user tries it: import a file with duplicates and PII, run the default
pipeline (from the CLI, and from the admin in Chromium), read the report, undo the run."""

import json
import subprocess
import sys

import pytest

from corpus.models import Dataset, Record
from curate.models import CurationRun
from tests.conftest import write_jsonl
from tests.e2e.conftest import ROOT, free_port, wait_for
from tests.e2e.test_user_journey import chromium_driver, manager

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = ("Explain how the water cycle works, starting with evaporation from oceans and lakes, "
        "then condensation into clouds, precipitation as rain or snow, and finally the collection "
        "of water in rivers and groundwater that flows back to the sea over many years")
ROWS = [
    {"instruction": BASE, "input": "", "output": "Water evaporates, condenses and falls again."},
    {"instruction": BASE.replace("many years", "many long years"), "input": "",
     "output": "It is a cycle driven by the sun."},
    {"instruction": BASE.upper(), "input": "", "output": "Same question, shouted."},
    {"instruction": "Email the report to dana.reyes@example-corp.com by Friday.", "input": "",
     "output": "I will send it to dana.reyes@example-corp.com today."},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
]


@pytest.fixture
def server(processes):
    """`winnow run` on a free port. (Its schema page can take over 2 s on a busy machine, so a
    read timeout means "not yet", like a refused connection.)"""
    port = free_port()
    proc = processes.start(sys.executable, "-m", "winnow.cli", "run", "--port", str(port),
                           "--web-workers", "1", log="server")
    base = f"http://127.0.0.1:{port}"
    processes.wait_serving(proc, f"{base}/admin/login/", log="server", timeout=180)
    yield base, proc


def winnow(processes, *args):
    return subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=processes.env,
                          capture_output=True, text=True, timeout=300)


def test_cli_curate_run_report_and_revert(processes, tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", ROWS)
    assert winnow(processes, "import", str(path), "--dataset", "messy").returncode == 0
    done = winnow(processes, "curate", "run", "--dataset", "messy")
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr  # the progress bar
    assert "near_dedup: 1 dropped, 1 kept" in done.stdout, done.stdout
    assert "exact_dedup: 1 dropped, 1 kept" in done.stdout
    assert "dropped:near_duplicate: 1" in done.stdout and "pii:EMAIL" in done.stdout
    records = list(Record.objects.filter(dataset__name="messy").order_by("id"))
    assert [r.status for r in records] == ["kept", "dropped", "dropped", "kept", "kept"]
    assert records[0].dup_cluster and records[1].dup_cluster == records[0].dup_cluster
    assert records[3].prompt == "Email the report to <EMAIL> by Friday."
    run = CurationRun.objects.get()

    report = winnow(processes, "curate", "report", str(run.pk), "--json")
    assert json.loads(report.stdout)["totals"]["dropped"] == 2
    bad = winnow(processes, "curate", "run", "--dataset", "messy", "--steps", "near_dedup,sparkle")
    assert bad.returncode == 2 and "pipeline.1.step" in bad.stderr

    reverted = winnow(processes, "curate", "revert", str(run.pk))
    assert reverted.returncode == 0, reverted.stderr
    records = list(Record.objects.filter(dataset__name="messy").order_by("id"))
    assert all(r.status == "kept" and r.dup_cluster == "" for r in records)
    assert records[3].prompt == ROWS[3]["instruction"]

    bench = write_jsonl(tmp_path / "bench.jsonl", [{"question": BASE}, {"question": "Unrelated."}])
    check = winnow(processes, "curate", "contamination", "dataset:messy", str(bench))
    assert check.returncode == 0 and "3 of 5 items" in check.stdout, check.stdout


def test_admin_runs_the_default_pipeline_shows_the_report_and_reverts(
        server, django_user_model, processes):
    from django.contrib.auth.models import Permission
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, _ = server
    user = manager(django_user_model, "cora")
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["corpus", "curate", "jobs"]))
    dataset = Dataset.objects.create(name="to-curate")
    for row in ROWS:
        Record.objects.create(dataset=dataset, prompt=row["instruction"])

    browser = chromium_driver()
    try:
        browser.get(f"{base}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("cora")
        browser.find_element(By.NAME, "password").send_keys("correct horse battery")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(lambda: "Site administration" in browser.page_source, timeout=20, what="admin")

        browser.get(f"{base}/admin/corpus/dataset/")
        browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{dataset.pk}']").click()
        Select(browser.find_element(By.NAME, "action")).select_by_value("run_default_pipeline")
        browser.find_element(By.NAME, "index").click()
        # The click submits a form: wait for the next page rather than read the old one.
        wait_for(lambda: "Queued" in browser.page_source and "curation run #" in browser.page_source,
                 timeout=30, what="the queued message")
        run = CurationRun.objects.get(dataset=dataset)
        wait_for(lambda: CurationRun.objects.get(pk=run.pk).status == "succeeded", timeout=180,
                 what="the curation run")

        browser.get(f"{base}/admin/curate/curationrun/{run.pk}/change/")
        page = browser.page_source
        assert "near_dedup" in page and "dropped:near_duplicate: 1" in page
        assert "2 records" in page  # the cluster-size bars
        browser.save_screenshot(str(ROOT / "var" / "screenshots" / "curation-report.png"))

        browser.get(f"{base}/admin/curate/curationrun/")
        browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{run.pk}']").click()
        Select(browser.find_element(By.NAME, "action")).select_by_value("revert_runs")
        browser.find_element(By.NAME, "index").click()
        wait_for(lambda: f"Run #{run.pk} reverted" in browser.page_source, timeout=30,
                 what="the reverted message")
    finally:
        browser.quit()
    assert CurationRun.objects.get(pk=run.pk).status == "reverted"
    assert set(Record.objects.filter(dataset=dataset).values_list("status", flat=True)) == {"kept"}
