"""`winnow snapshot build RECIPE.yaml` as a user runs it: a progress bar, a ready snapshot
that datasets loads, and a clear message for a bad recipe."""

import subprocess
import sys

import pytest

from corpus.models import Snapshot
from tests.corpus.snapshot_helpers import feedback, record
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def winnow(processes, *args):
    return subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=processes.env,
                          capture_output=True, text=True, timeout=180)


def test_snapshot_build_from_a_yaml_recipe(processes, tmp_path, dataset, users):
    for i in range(10):
        rec, (a, b) = record(dataset, f"prompt {i}", f"yes {i}", f"no {i}")
        feedback(rec, "pairwise", {"a": a, "b": b, "choice": "a"}, users["manager"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: cli-dpo\nkind: preference\nsources:\n  datasets: [demo]\n"
                      "split: {test_fraction: 0.2, seed: 1}\n")
    done = winnow(processes, "snapshot", "build", str(recipe))
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr  # the tqdm bar
    snapshot = Snapshot.objects.get(name="cli-dpo")
    assert snapshot.status == "ready" and f"snapshot {snapshot.pk} ready" in done.stdout
    folder = tmp_path / "data" / "snapshots" / str(snapshot.pk)
    assert str(folder) in done.stdout

    from datasets import load_dataset

    loaded = load_dataset("json", data_files={"train": str(folder / "train.jsonl"),
                                              "test": str(folder / "test.jsonl")})
    assert loaded["train"].num_rows + loaded["test"].num_rows == 10

    listed = winnow(processes, "snapshot", "list")
    assert "cli-dpo" in listed.stdout and "ready" in listed.stdout
    shown = winnow(processes, "snapshot", "show", str(snapshot.pk))
    assert "# cli-dpo" in shown.stdout

    recipe.write_text("kind: preference\nsources: [demo]\npolicies: {ties: maybe}\n")
    bad = winnow(processes, "snapshot", "build", str(recipe))
    assert bad.returncode == 2 and "policies.ties: must be one of drop, keep" in bad.stderr
