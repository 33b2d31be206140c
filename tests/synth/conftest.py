"""Fixtures for synth: a loopback OpenAI-compatible server that answers each method's prompts
in the shape that method asks for, and a Provider pointing at it."""

import hashlib

import pytest

from synth.models import Provider
from tests.synth.openai_loopback import LoopbackServer

WORDS = ("apple river stone music cloud garden engine planet winter market bridge candle forest "
         "harbor island ladder mirror needle orchard pepper quartz rocket saddle tunnel violin "
         "wagon yacht zebra anchor basket cactus dolphin ember falcon glacier hammer igloo jungle "
         "kettle lantern meadow nectar oyster parrot quilt raven sapphire tiger umbrella velvet "
         "walnut xylophone yogurt zipper").split()
VERBS = ["Explain", "Describe", "Compare", "Summarize", "List", "Discuss", "Outline", "Evaluate"]


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def method_aware_reply(body: dict) -> str:
    """Answers like a cooperative model would, deterministically per request."""
    content = body["messages"][-1]["content"]
    h = digest(content + str(body.get("temperature")) + str(body.get("seed")))
    if "Come up with a new task" in content:
        picks = [WORDS[(h >> (6 * i)) % len(WORDS)] for i in range(6)]
        return f"{VERBS[h % len(VERBS)]} how the {picks[0]} and the {picks[1]} relate to {picks[2]}, {picks[3]} and {picks[4]} {picks[5]}."
    if "Prompt Rewriter" in content:
        original = content.split("Prompt: ", 1)[1].split("\n\nReply", 1)[0]
        return f"{original} Explain your reasoning in three numbered steps and give one concrete example."
    if "Prompt Creator" in content:
        return "Describe how lighthouse keepers in the nineteenth century kept their lamps burning through storms."
    if "Think step by step" in content:
        return "First, 2 plus 2 makes 4. Then nothing else changes.\nSo the answer is 4."
    if content.startswith("Read the text and write one question"):
        return '```json\n{"question": "What does the text describe?", "answer": "A short grounded answer."}\n```'
    if content.startswith("Evaluate the response"):
        return f"Rating: {h % 5 + 1}\nRationale: it addresses the instruction."
    if content.startswith("Which response"):
        return "Choice: A\nRationale: the first one is more complete."
    return f"Here is an answer ({h % 1000}) to: {content[:60]}"


@pytest.fixture
def loopback():
    with LoopbackServer(method_aware_reply) as server:
        yield server


@pytest.fixture
def provider(db, loopback):
    return Provider.objects.create(name="loopback", base_url=loopback.base_url, model="test-model",
                                   max_concurrency=4, max_retries=2, timeout_seconds=10)


@pytest.fixture(scope="session")
def bundled_model_server():
    """One real `transformers serve` of the bundled SmolLM2 for the whole session (it takes
    ~20 s to load; the tests that use it are marked slow)."""
    import os
    import signal
    import subprocess

    from corpus.bundled_model import bundled_model_dir
    from synth.localserver import server_command, server_env
    from synth.serving import base_url_for, free_port, wait_until_serving

    port = free_port()
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"winnow-test-llm-{port}.log"), "wb")
    proc = subprocess.Popen(server_command(bundled_model_dir(), port), env=server_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(base_url_for("127.0.0.1", port), timeout=300, proc=proc)
        yield base_url_for("127.0.0.1", port)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def bundled_provider(db, bundled_model_server):
    from corpus.bundled_model import register_bundled_model
    from synth.serving import ensure_provider_for_model

    provider = ensure_provider_for_model(register_bundled_model(), base_url=bundled_model_server, name="local")
    provider.max_retries = 2
    provider.save()
    return provider
