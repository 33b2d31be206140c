"""The engine against the loopback server: retries, backoff, Retry-After, timeouts, broken
JSON, the in-flight cap, token buckets, and the request cache."""

import asyncio
import time

import pytest

from synth.engine import CompletionRequest, Engine, ProviderSpec, RequestCache, parse_completion
from synth.ratelimit import TokenBucket
from tests.synth.openai_loopback import LoopbackServer, Reply


def spec_for(server, **overrides) -> ProviderSpec:
    values = {"id": None, "name": "loopback", "base_url": server.base_url, "model": "test-model",
              "max_concurrency": 4, "timeout_seconds": 5, "max_retries": 4}
    values.update(overrides)
    return ProviderSpec(**values)


def requests(n: int, **params) -> list[CompletionRequest]:
    return [CompletionRequest(messages=[{"role": "user", "content": f"question {i}"}],
                              params={"max_tokens": 8, **params}) for i in range(n)]


def run(spec, reqs, **engine_args):
    engine_args.setdefault("base_delay", 0.01)
    with Engine(spec, **engine_args) as engine:
        return engine.run(reqs), engine.stats


def test_429_with_retry_after_pauses_then_succeeds():
    script = [Reply(status=429, headers={"retry-after": "1"})]
    with LoopbackServer(script=script) as server:
        results, stats = run(spec_for(server), requests(1))
    assert results[0].ok and results[0].text == "Echo: question 0"
    assert results[0].attempts == 2 and stats.retries == 1 and stats.calls == 2
    first, second = server.log
    assert second["at"] - first["at"] >= 0.95  # Retry-After honoured, not the 10 ms backoff


def test_429_pauses_every_request_to_the_provider():
    script = [Reply(status=429, headers={"retry-after": "1"})]
    with LoopbackServer(script=script, delay=0.05) as server:
        results, _ = run(spec_for(server, max_concurrency=1), requests(3))
    assert all(r.ok for r in results)
    after_429 = [e["at"] for e in server.log[1:]]
    assert min(after_429) - server.log[0]["at"] >= 0.95


def test_5xx_and_broken_json_are_retried():
    script = [Reply(status=500), Reply(status=503), Reply(status=200, body=b'{"choices": [broken')]
    with LoopbackServer(script=script) as server:
        results, stats = run(spec_for(server, max_concurrency=1), requests(1))
    assert results[0].ok and results[0].attempts == 4 and stats.retries == 3


def test_json_that_is_not_a_completion_is_retried_as_a_server_fault():
    script = [Reply(status=200, body=b'{"choices": []}'), Reply(status=200, body=b'[1, 2]'),
              Reply(status=200, body=b'{"choices": [{"message": {"content": null}}]}'),
              Reply(status=200, body=b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}}')]
    with LoopbackServer(script=script) as server:
        results, stats = run(spec_for(server, max_concurrency=1), requests(1))
    assert results[0].ok and results[0].text == "Echo: question 0"
    assert results[0].attempts == 5 and stats.retries == 4


def test_a_reply_that_never_becomes_a_completion_fails_with_the_reason():
    with LoopbackServer(responder=lambda body: Reply(status=200, body=b'{"choices": [{}]}')) as server:
        results, stats = run(spec_for(server, max_retries=1), requests(1))
    assert not results[0].ok and results[0].error_kind == "server"
    assert "malformed reply: not a chat completion" in results[0].error and stats.failures == 1


@pytest.mark.parametrize("body, expected", [
    (b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],'
     b' "usage": {"prompt_tokens": 3, "completion_tokens": 1}}', ("hi", "length", 3, 1)),
    (b'{"choices": [{"message": {"content": ""}}]}', ("", "", 0, 0)),  # no usage, no reason
    (b'{"choices": [{"message": {"content": "a"}, "finish_reason": null}], "usage": null}', ("a", "", 0, 0)),
])
def test_parse_completion_reads_the_four_fields(body, expected):
    assert parse_completion(body) == expected


@pytest.mark.parametrize("body", [b"", b"null", b'"text"', b'{"choices": "x"}', b'{"choices": [{"message": []}]}',
                                  b'{"choices": [{"message": {"content": 5}}]}'])
def test_parse_completion_rejects_what_is_not_one(body):
    with pytest.raises(ValueError):
        parse_completion(body)


def test_persistent_500_gives_up_after_max_retries_with_the_reason():
    with LoopbackServer(responder=lambda body: Reply(status=500)) as server:
        results, stats = run(spec_for(server, max_retries=2), requests(1))
    assert not results[0].ok
    assert results[0].error_kind == "server" and "HTTP 500" in results[0].error
    assert results[0].attempts == 3 and server.calls == 3 and stats.failures == 1


def test_client_errors_are_not_retried():
    with LoopbackServer(responder=lambda body: Reply(status=401)) as server:
        results, _ = run(spec_for(server), requests(1))
    assert results[0].error_kind == "auth" and server.calls == 1
    with LoopbackServer(responder=lambda body: Reply(status=400)) as server:
        results, _ = run(spec_for(server), requests(1))
    assert results[0].error_kind == "bad_request" and server.calls == 1


def test_slow_reply_times_out_and_is_retried():
    script = [Reply(text="late", delay=3)]
    with LoopbackServer(script=script) as server:
        results, stats = run(spec_for(server, timeout_seconds=0.5), requests(1))
    assert results[0].ok and results[0].text == "Echo: question 0"
    assert results[0].attempts == 2 and stats.retries == 1


def test_unreachable_endpoint_is_a_connection_error():
    with LoopbackServer() as server:
        spec = spec_for(server, max_retries=1)
    results, _ = run(spec, requests(1))  # the server is gone: connection refused
    assert results[0].error_kind == "connection" and results[0].attempts == 2


def test_requests_in_flight_never_exceed_the_cap():
    with LoopbackServer(delay=0.1) as server:
        results, _ = run(spec_for(server, max_concurrency=3), requests(12))
    assert all(r.ok for r in results)
    assert server.max_in_flight == 3


def test_results_come_back_in_request_order_with_token_accounting():
    with LoopbackServer() as server:
        results, stats = run(spec_for(server, price_prompt_per_1k=1.0, price_completion_per_1k=2.0), requests(5))
    assert [r.text for r in results] == [f"Echo: question {i}" for i in range(5)]
    assert stats.prompt_tokens == 50 and stats.completion_tokens == 15
    assert stats.cost == pytest.approx((50 * 1.0 + 15 * 2.0) / 1000)


def test_token_bucket_waits_for_refill():
    async def scenario():
        bucket = TokenBucket(600)  # 10 a second
        await bucket.acquire(600)
        started = time.monotonic()
        for _ in range(3):
            await bucket.acquire(1)
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.25


def test_requests_per_minute_limit_spaces_requests():
    with LoopbackServer() as server:
        spec = spec_for(server, requests_per_minute=60)
        with Engine(spec, base_delay=0.01) as engine:
            engine.core.rpm.tokens = 0  # start with the minute's burst spent
            engine.run(requests(2))
    gap = server.log[1]["at"] - server.log[0]["at"]
    assert gap >= 0.9


def test_cache_answers_a_rerun_without_calling(db):
    with LoopbackServer() as server:
        spec = spec_for(server)
        reqs = requests(4)
        with Engine(spec, cache=RequestCache(spec)) as engine:
            first = engine.run(reqs)
        assert server.calls == 4
        with Engine(spec, cache=RequestCache(spec)) as engine:
            second = engine.run(requests(4))
            assert engine.stats.cache_hits == 4
        assert server.calls == 4
    assert [r.text for r in first] == [r.text for r in second]
    assert all(r.cached for r in second)


def test_sample_index_and_params_are_part_of_the_cache_key():
    spec = ProviderSpec(id=1, name="p", base_url="http://x/v1", model="m")
    base = CompletionRequest(messages=[{"role": "user", "content": "hi"}], params={"temperature": 0.7})
    other_sample = CompletionRequest(messages=base.messages, params=base.params, sample_index=1)
    other_params = CompletionRequest(messages=base.messages, params={"temperature": 0.9})
    keys = {r.cache_key(spec) for r in (base, other_sample, other_params)}
    assert len(keys) == 3
    same = CompletionRequest(messages=[{"role": "user", "content": "hi"}], params={"temperature": 0.7}, tag="x")
    assert same.cache_key(spec) == base.cache_key(spec)
