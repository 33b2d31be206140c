"""The generation engine: many chat completions against one OpenAI-compatible endpoint.

One request is the unit of work. Per provider: a cap on requests in flight (a semaphore),
token buckets for requests and tokens per minute, and retries with exponential backoff and
full jitter on 429, 5xx, timeouts and connection errors, honouring Retry-After (a 429 with
Retry-After pauses the whole provider, not only the request that got it). The `openai`
client's own retries are off (max_retries=0) so every attempt is counted here.

Threads: the asyncio loop runs on a thread of its own; the caller's thread (a job handler)
owns the database connection, reads the request cache before dispatch, and writes finished
replies to the cache as they arrive (all that arrived since the last write in one
transaction). A killed job therefore loses at most the replies of its last few milliseconds,
and a resumed one replays everything else from the cache without calling the endpoint.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ratelimit import TokenBucket

if TYPE_CHECKING:
    import openai

logger = logging.getLogger("winnow.synth")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ProviderSpec:
    """What the engine needs of a Provider row (plain values: the loop thread has no ORM)."""

    id: int | None
    name: str
    base_url: str
    model: str
    api_key: str = "no-key"
    max_concurrency: int = 8
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    timeout_seconds: float = 120.0
    max_retries: int = 6
    supports_json_mode: bool = False
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0

    @classmethod
    def from_provider(cls, provider) -> ProviderSpec:
        return cls(
            id=provider.pk, name=provider.name, base_url=provider.base_url, model=provider.model,
            api_key=provider.api_key(), max_concurrency=provider.max_concurrency,
            requests_per_minute=provider.requests_per_minute,
            tokens_per_minute=provider.tokens_per_minute,
            timeout_seconds=provider.timeout_seconds, max_retries=provider.max_retries,
            supports_json_mode=provider.supports_json_mode,
            price_prompt_per_1k=float(provider.price_prompt_per_1k),
            price_completion_per_1k=float(provider.price_completion_per_1k),
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_prompt_per_1k
                + completion_tokens * self.price_completion_per_1k) / 1000.0


@dataclass
class CompletionRequest:
    messages: list[dict]
    params: dict = field(default_factory=dict)
    # Tells apart samples of one prompt with the same parameters (N responses, k rationales).
    sample_index: int = 0
    json_mode: bool = False
    tag: Any = None  # the caller's bookkeeping; not part of the cache key

    def cache_key(self, spec: ProviderSpec) -> str:
        body = {
            "provider": spec.id if spec.id is not None else spec.base_url,
            "model": spec.model,
            "messages": self.messages,
            "params": self.params,
            "sample": self.sample_index,
            "json": bool(self.json_mode and spec.supports_json_mode),
        }
        encoded = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()


@dataclass
class CompletionResult:
    request: CompletionRequest
    key: str
    text: str | None = None
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0
    error: str | None = None
    # "auth", "not_found", "bad_request", "rate_limit", "server", "timeout", "connection"
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EngineStats:
    requests_done: int = 0
    cache_hits: int = 0
    calls: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    busy_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        return self.completion_tokens / self.busy_seconds if self.busy_seconds else None


def _retry_after_seconds(response) -> float | None:
    if response is None:
        return None
    headers = response.headers
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def parse_completion(content: bytes) -> tuple[str, str, int, int]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of a chat completion body; a
    ValueError when it is not one (classified as a server fault, so it is retried)."""
    body = json.loads(content)
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        finish_reason = str(choice.get("finish_reason") or "")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a chat completion ({type(exc).__name__}: {exc})") from None
    if not isinstance(text, str):
        raise ValueError("the reply has no message content")
    return text, finish_reason, prompt_tokens, completion_tokens


def classify_error(exc: BaseException) -> tuple[str, bool, float | None, str]:
    """(kind, retryable, retry_after seconds, message) for an exception from the client."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", True, None, "the request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return "connection", True, None, f"cannot connect: {cause}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        after = _retry_after_seconds(exc.response)
        message = f"HTTP {status}: {_short_body(exc)}"
        if status == 429:
            return "rate_limit", True, after, message
        if status in (401, 403):
            return "auth", False, None, message
        if status == 404:
            return "not_found", False, None, message
        if status in RETRYABLE_STATUS or status >= 500:
            return "server", True, after, message
        return "bad_request", False, None, message
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValueError):
        # The endpoint answered 200 with a body that is not a completion: treat as a server fault.
        return "server", True, None, f"malformed reply: {exc}"
    return "error", False, None, f"{type(exc).__name__}: {exc}"


def redact(text: str, secret: str) -> str:
    """Some endpoints quote the key they were sent in their error bodies ("Incorrect API key
    provided: sk-..."); an error message is stored on the job, logged and served by the API, so
    the key, and any 8+ character piece of it, is cut out first."""
    if not secret or secret == "no-key" or len(secret) < 8:
        return text
    if secret in text:
        return text.replace(secret, "[redacted key]")
    for size in range(len(secret) - 1, 7, -1):  # a prefix or suffix quoted around a mask
        for piece in {secret[:size], secret[-size:]}:
            if piece in text:
                text = text.replace(piece, "[redacted key]")
    return text


def _short_body(exc) -> str:
    try:
        text = exc.response.text
    except Exception:  # a streamed or closed body
        text = str(exc)
    return " ".join(text.split())[:300]


class AsyncEngine:
    """The asyncio core: call `complete()` from coroutines on one event loop."""

    def __init__(
        self, spec: ProviderSpec, *, base_delay: float = 0.5, max_delay: float = 30.0,
        client: openai.AsyncOpenAI | None = None, rng: random.Random | None = None,
    ):
        self.spec = spec
        self.base_delay = base_delay
        self.max_delay = max_delay
        # Imported here, not at the top: the SDK's types take ~1 s to import, and every process
        # that registers the generation job (web, CLI, worker) would pay it at start.
        import openai

        self.client = client or openai.AsyncOpenAI(
            base_url=spec.base_url, api_key=spec.api_key, max_retries=0,
            timeout=spec.timeout_seconds,
        )
        self.semaphore = asyncio.Semaphore(max(1, spec.max_concurrency))
        self.rpm = TokenBucket(spec.requests_per_minute) if spec.requests_per_minute else None
        self.tpm = TokenBucket(spec.tokens_per_minute) if spec.tokens_per_minute else None
        self.paused_until = 0.0
        self.stats = EngineStats()
        self._in_flight = 0
        self._busy_since = 0.0
        self._rng = rng or random.Random()

    def _estimate_tokens(self, request: CompletionRequest) -> int:
        chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        return chars // 4 + int(request.params.get("max_tokens") or 256)

    def _enter(self) -> None:
        if self._in_flight == 0:
            self._busy_since = time.monotonic()
        self._in_flight += 1

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.stats.busy_seconds += time.monotonic() - self._busy_since

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter on an exponential cap; never less than the server's Retry-After."""
        delay = self._rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    async def complete(self, request: CompletionRequest, key: str | None = None) -> CompletionResult:
        spec = self.spec
        key = key or request.cache_key(spec)
        result = CompletionResult(request=request, key=key)
        kwargs = dict(request.params)
        if request.json_mode and spec.supports_json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        while True:
            result.attempts += 1
            estimate = self._estimate_tokens(request)
            if self.rpm:
                await self.rpm.acquire(1)
            if self.tpm:
                await self.tpm.acquire(estimate)
            async with self.semaphore:
                # Checked with the slot held: requests queued on the semaphore when a 429
                # arrived wait out the pause too.
                while (wait := self.paused_until - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                self._enter()
                self.stats.calls += 1
                try:
                    # The raw JSON, not the SDK's pydantic models: a client bound by its own
                    # CPU (hundreds of calls in flight) spent ~10% of it building objects
                    # of which four fields are read.
                    raw = await self.client.chat.completions.with_raw_response.create(
                        model=spec.model, messages=request.messages, **kwargs
                    )
                    text, finish_reason, prompt_tokens, completion_tokens = parse_completion(
                        raw.http_response.content)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    kind, retryable, retry_after, message = classify_error(exc)
                    message = redact(message, spec.api_key)
                else:
                    result.text = text
                    result.finish_reason = finish_reason
                    result.prompt_tokens = prompt_tokens
                    result.completion_tokens = completion_tokens
                    if self.tpm:
                        self.tpm.adjust(result.prompt_tokens + result.completion_tokens - estimate)
                    self.stats.prompt_tokens += result.prompt_tokens
                    self.stats.completion_tokens += result.completion_tokens
                    self.stats.cost += spec.cost(result.prompt_tokens, result.completion_tokens)
                    self.stats.requests_done += 1
                    return result
                finally:
                    self._leave()
            if kind == "rate_limit":
                # Everyone waits: the limit is the provider's, not this request's.
                pause = retry_after if retry_after is not None else self.backoff(result.attempts, None)
                self.paused_until = max(self.paused_until, time.monotonic() + pause)
            if not retryable or result.attempts > spec.max_retries:
                result.error = message
                result.error_kind = kind
                self.stats.failures += 1
                self.stats.requests_done += 1
                return result
            self.stats.retries += 1
            delay = self.backoff(result.attempts, retry_after)
            logger.info("%s: %s; retry %d in %.2f s", spec.name, message, result.attempts, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self.client.close()


class RequestCache:
    """Finished replies in the database (synth.CachedCompletion), read and written by the
    caller's thread."""

    def __init__(self, spec: ProviderSpec, job_id: int | None = None):
        self.spec = spec
        self.job_id = job_id

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        from .models import CachedCompletion

        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            rows = CachedCompletion.objects.filter(key__in=unique[start:start + 500]).values(
                "key", "text", "finish_reason", "prompt_tokens", "completion_tokens"
            )
            found.update({row["key"]: row for row in rows})
        return found

    def put_many(self, results: list[CompletionResult]) -> None:
        from .models import CachedCompletion

        rows = [
            CachedCompletion(
                key=r.key, provider_id=self.spec.id, model=self.spec.model,
                request={"messages": r.request.messages, "params": r.request.params,
                         "sample": r.request.sample_index, "json": r.request.json_mode},
                text=r.text, finish_reason=r.finish_reason[:32], prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens, job_id=self.job_id,
            )
            for r in results if r.ok and not r.cached
        ]
        if rows:
            CachedCompletion.objects.bulk_create(rows, ignore_conflicts=True)


class Engine:
    """The synchronous face of the engine, for job handlers and the CLI.

        with Engine(spec, cache=RequestCache(spec, job_id)) as engine:
            for result in engine.stream(requests):   # in completion order
                ...
            results = engine.run(requests)           # in request order

    `tick` is called on the caller's thread about every `tick_seconds` while waiting (to
    report progress, flush accounting and check for cancellation: an exception it raises stops
    the engine and cancels the requests in flight).
    """

    def __init__(
        self, spec: ProviderSpec, *, cache: RequestCache | None = None,
        tick: Callable[[EngineStats], None] | None = None, tick_seconds: float = 0.5,
        base_delay: float = 0.5, max_delay: float = 30.0, write_interval: float = 0.05,
    ):
        self.spec = spec
        self.cache = cache
        self.write_interval = write_interval
        self.tick = tick
        self.tick_seconds = tick_seconds
        self._engine_args = {"base_delay": base_delay, "max_delay": max_delay}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.core: AsyncEngine | None = None

    # -- lifetime ----------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"synth-engine-{self.spec.name}",
                                        daemon=True)
        self._thread.start()
        self.core = self._call(self._make_core())
        return self

    async def _make_core(self) -> AsyncEngine:
        return AsyncEngine(self.spec, **self._engine_args)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self.core.close(), timeout=10)
        except Exception:
            logger.debug("closing the client failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def stats(self) -> EngineStats:
        return self.core.stats

    # -- running requests --------------------------------------------------------------------

    def run(self, requests: list[CompletionRequest]) -> list[CompletionResult]:
        results: list[CompletionResult | None] = [None] * len(requests)
        index = {id(r): i for i, r in enumerate(requests)}
        for result in self.stream(requests):
            results[index[id(result.request)]] = result
        return results  # type: ignore[return-value]

    def stream(self, requests: Iterable[CompletionRequest]) -> Iterator[CompletionResult]:
        requests = list(requests)
        keys = [r.cache_key(self.spec) for r in requests]
        hits = self.cache.get_many(keys) if self.cache else {}
        misses = []
        for request, key in zip(requests, keys):
            row = hits.get(key)
            if row is None:
                misses.append((request, key))
                continue
            self.stats.cache_hits += 1
            self.stats.requests_done += 1
            yield CompletionResult(
                request=request, key=key, text=row["text"], finish_reason=row["finish_reason"],
                prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                cached=True,
            )
        if not misses:
            return
        done: queue.SimpleQueue = queue.SimpleQueue()
        batch = asyncio.run_coroutine_threadsafe(self._dispatch(misses, done), self._loop)
        remaining = len(misses)
        last_tick = 0.0
        try:
            while remaining:
                try:
                    arrived = [done.get(timeout=self.tick_seconds)]
                except queue.Empty:
                    arrived = []
                    if batch.done() and batch.exception():
                        raise batch.exception()
                if arrived:
                    # Gather what arrives in the next few milliseconds too: one transaction for
                    # many replies keeps the database (and this thread's share of the GIL) off
                    # the event loop's back.
                    gather_until = time.monotonic() + self.write_interval
                    while len(arrived) < 500:
                        wait = gather_until - time.monotonic()
                        try:
                            arrived.append(done.get(timeout=wait) if wait > 0 else done.get_nowait())
                        except queue.Empty:
                            break
                if arrived and self.cache:
                    self.cache.put_many(arrived)  # durable before anyone acts on them
                remaining -= len(arrived)
                yield from arrived
                now = time.monotonic()
                if self.tick and now - last_tick >= self.tick_seconds:
                    last_tick = now
                    self.tick(self.stats)
        finally:
            if not batch.done():
                batch.cancel()
                try:
                    batch.result(timeout=10)
                except BaseException:  # cancelled, as asked
                    pass

    async def _dispatch(self, misses, done: queue.SimpleQueue) -> None:
        async def one(request, key):
            done.put(await self.core.complete(request, key))

        tasks = [asyncio.ensure_future(one(request, key)) for request, key in misses]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
