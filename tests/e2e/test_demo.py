"""`winnow demo` as a user runs it: every stage on the embedded default with the real bundled
model, small enough for CI. The figures of a full-size run are in docs/demo.md; here the rule
is `max_sentences:1` so that a handful of prompts still gives decisive pairs."""

import json
import os
import sqlite3
import subprocess
import sys

import psutil
import pytest
from django.conf import settings

from corpus.bundled_model import is_prepared
from tests.e2e.conftest import ROOT

pytestmark = [
    pytest.mark.e2e,
    # The demo is defined on the embedded default (SQLite); the PostgreSQL pass adds nothing.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the demo runs on the embedded default"),
]

STAGES = ["bundled model served", "self-instruct", "responses", "curation", "judgement", "snapshot",
          "DPO LoRA + evaluation", "trained model served", "round two"]


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(not is_prepared(), reason="the bundled model is not converted (make install)")
def test_the_demo_runs_every_stage_and_stores_the_win_rate(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "WINNOW_DATA_DIR": str(data), "WINNOW_MODELS_DIR": str(settings.MODELS_DIR)}
    env.pop("DATABASE_URL", None)
    args = ["demo", "--prompts", "8", "--eval-prompts", "2", "--epochs", "1", "--round-two", "2",
            "--response-tokens", "96", "--eval-tokens", "32", "--rule", "max_sentences:1", "--name", "tiny"]
    done = subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((data / "demo" / "tiny.json").read_text())
    assert [s["name"] for s in report["stages"]] == STAGES
    assert 0 <= report["win_rate"] <= 1 and report["goal_met"] == (report["win_rate"] >= 0.65)
    assert "win rate of the trained model over the base" in done.stdout
    assert "self-instruct prompts" in done.stderr  # a progress bar per stage
    figures = {s["name"]: s["figures"] for s in report["stages"]}
    assert figures["self-instruct"]["prompts"] >= 4
    assert figures["snapshot"]["train pairs"] >= 2 and figures["snapshot"]["test pairs"] >= 1
    assert figures["round two"]["responses"] == 2

    db = sqlite3.connect(data / "winnow.sqlite3")
    (win_rate, method, mode, status), = db.execute(
        "SELECT win_rate, method, mode, status FROM training_trainingrun WHERE id = ?",
        (report["training_run"],))
    assert (win_rate, method, mode, status) == (report["win_rate"], "dpo", "lora", "succeeded")
    judges = dict(db.execute("SELECT json_extract(provenance, '$.method'), count(*) FROM corpus_feedback "
                             "GROUP BY 1").fetchall())
    assert judges["rule_judge"] >= 2 * figures["snapshot"]["train pairs"]
    # The bundled model judged too (a 135M judge's replies may not parse; the job must succeed).
    assert db.execute("SELECT j.status FROM synth_generationjob g JOIN jobs_job j ON j.id = g.job_id "
                      "WHERE g.method = 'judge'").fetchall() == [("succeeded",)]
    # The trained model answered as a provider of its own.
    providers = {name for (name,) in db.execute(
        "SELECT DISTINCT json_extract(provenance, '$.provider_name') FROM corpus_response")}
    assert len(providers) == 2
    # Both model servers were stopped.
    assert db.execute("SELECT count(*) FROM synth_modelserver").fetchone() == (0,)
    assert len(report["model_servers"]) == 2
    for pid in report["model_servers"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("args, message", [
    (["--prompts", "2"], "--prompts must be at least 4"),
    (["--rule", "max_vibes:2"], "--rule 'max_vibes:2' is not a known rule"),
    (["--epochs", "0"], "--epochs must be above 0"),
    (["--name", "../escape"], "--name may hold letters"),
    (["--eval-prompts", "0", "--round-two", "0"], "--round-two must be at least 1"),
])
def test_bad_options_are_refused_before_anything_runs(tmp_path, args, message):
    env = {**os.environ, "WINNOW_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "winnow.cli", "demo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "data" / "winnow.sqlite3").exists()  # not even migrated
