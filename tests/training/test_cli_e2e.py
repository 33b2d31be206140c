"""`winnow train` and `winnow models` as a user runs them: a real worker process trains while
`winnow train start` follows with a progress bar."""

import subprocess
import sys

import pytest

from corpus.models import RegisteredModel
from tests.e2e.conftest import ROOT, Processes
from training.models import TrainingRun

from .factories import make_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture
def processes(tmp_path, transactional_db):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def winnow(processes, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=processes.env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_start_follows_to_the_end_and_models_lists_the_result(processes, tiny_model_dir):
    registered = winnow(processes, "models", "--register", str(tiny_model_dir), "--name", "tiny")
    assert registered.returncode == 0, registered.stderr
    assert "registered tiny" in registered.stdout
    again = winnow(processes, "models", "--register", "/no/such/folder", "--name", "nope")
    assert again.returncode == 2 and "no such folder" in again.stderr

    snapshot = make_snapshot("preference")
    bad = winnow(processes, "train", "start", "--method", "dpo", "--snapshot", str(snapshot.pk),
                 "--base-model", "tiny", "--set", "batch_size=0")
    assert bad.returncode == 2 and "config.batch_size: must be between" in bad.stderr
    assert TrainingRun.objects.count() == 0

    processes.worker()
    done = winnow(processes, "train", "start", "--method", "dpo", "--snapshot", str(snapshot.pk),
                  "--base-model", "tiny", "--set", "max_steps=2", "--set", "max_length=64",
                  "--set", "generation_eval_prompts=2", "--set", "generation_max_new_tokens=8")
    assert done.returncode == 0, done.stdout + done.stderr + processes.log("worker")
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"
    assert "2/2" in done.stderr  # the tqdm bar reached the end
    assert f"run {run.pk}: dpo/lora succeeded at step 2/2" in done.stdout
    assert "win rate vs base" in done.stdout

    listed = winnow(processes, "train", "list")
    assert listed.returncode == 0 and "succeeded" in listed.stdout and "dpo" in listed.stdout
    models = winnow(processes, "models")
    assert run.artifact.name in models.stdout and "adapter" in models.stdout
    assert RegisteredModel.objects.filter(origin="trained").count() == 1
