"""`winnow generate` and `winnow provider` as a user runs them, against a loopback endpoint."""

import subprocess
import sys

import pytest

from corpus.models import Record
from synth.models import Provider
from tests.e2e.conftest import ROOT
from tests.synth.conftest import method_aware_reply
from tests.synth.openai_loopback import LoopbackServer

pytestmark = [pytest.mark.e2e]


def winnow(processes, *args):
    return subprocess.run([sys.executable, "-m", "winnow.cli", *args], cwd=ROOT, env=processes.env,
                          capture_output=True, text=True, timeout=120)


def test_generate_with_a_progress_bar_then_rerun_from_cache(processes, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Explain how tides work.\nName three uses of copper in homes.\n")
    with LoopbackServer(method_aware_reply) as server:
        Provider.objects.create(name="lb", base_url=server.base_url, model="m")
        args = ["generate", "self_instruct", "--dataset", "cli-synth", "--provider", "lb", "--seeds", str(seeds),
                "--set", "num_instructions=3", "--set", "params.max_tokens=32"]
        done = winnow(processes, *args)
        assert done.returncode == 0, done.stderr
        assert "created dataset 'cli-synth'" in done.stdout and "3 records" in done.stdout
        assert "100%" in done.stderr  # the tqdm bar
        records = Record.objects.filter(dataset__name="cli-synth")
        assert records.count() == 3 and records.first().provenance["seed_set"] == "uploaded"
        assert server.log[0]["body"]["max_tokens"] == 32
        calls = server.calls
        again = winnow(processes, *args)
        assert again.returncode == 0 and server.calls == calls and "0 calls" in again.stdout

        listed = winnow(processes, "provider", "list")
        assert "lb" in listed.stdout
        health = winnow(processes, "provider", "health", "lb")
        assert health.returncode == 0 and '"ok": true' in health.stdout
        tried = winnow(processes, "provider", "try", "lb", "Tell me about owls")
        assert tried.returncode == 0 and "Here is an answer" in tried.stdout


def test_generate_bad_input_says_why(processes):
    assert "unknown provider 'nope'" in winnow(processes, "generate", "responses", "--dataset", "d", "--provider", "nope").stderr
    Provider.objects.create(name="lb", base_url="http://127.0.0.1:9/v1", model="m")
    bad = winnow(processes, "generate", "responses", "--dataset", "d", "--provider", "lb", "--set", "params.temperature=7")
    assert bad.returncode == 2 and "config.params" in bad.stderr
    unknown = winnow(processes, "generate", "sorcery", "--dataset", "d", "--provider", "lb")
    assert unknown.returncode == 2 and "unknown method 'sorcery'" in unknown.stderr
