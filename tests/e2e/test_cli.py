"""The `winnow` console command against the test database, as a user runs it."""

import subprocess
import sys

import pytest

from corpus.models import Dataset, Record
from tests.conftest import write_jsonl
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e]


def winnow(processes, *args):
    return subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=processes.env,
                          capture_output=True, text=True, timeout=120)


def test_import_prints_progress_and_a_line_numbered_report(processes, tmp_path):
    good = write_jsonl(tmp_path / "dolly.jsonl", [
        {"instruction": f"Q{i}", "context": "", "response": f"A{i}", "category": "open_qa"} for i in range(3)
    ])
    done = winnow(processes, "import", str(good), "--dataset", "cli-demo")
    assert done.returncode == 0, done.stderr
    assert "created dataset 'cli-demo'" in done.stdout and "3 records, 3 responses" in done.stdout
    assert "100%" in done.stderr  # the tqdm bar
    assert Record.objects.filter(dataset__name="cli-demo").count() == 3

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "ok"}, "{nope", {"context": "x", "instruction": 3}])
    failed = winnow(processes, "import", str(bad), "--dataset", "cli-demo")
    assert failed.returncode == 1
    assert "line 2: invalid JSON" in failed.stderr and "line 3: instruction: must be a string" in failed.stderr
    assert Record.objects.filter(dataset__name="cli-demo").count() == 3

    listed = winnow(processes, "jobs")
    assert listed.returncode == 0 and "corpus.import" in listed.stdout and "failed" in listed.stdout
    missing = winnow(processes, "import", str(tmp_path / "nope.jsonl"), "--dataset", "x")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert not Dataset.objects.filter(name="x").exists()


def test_background_import_is_run_by_the_worker_and_followed(processes, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"doc {i}"} for i in range(50)])
    queued = winnow(processes, "import", str(path), "--dataset", "bg", "--background")
    assert queued.returncode == 0 and "queued job" in queued.stdout
    job_id = queued.stdout.split("queued job ")[1].split(";")[0]
    processes.worker()
    followed = winnow(processes, "jobs", job_id, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert "succeeded: 50 records" in followed.stdout
