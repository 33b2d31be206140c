"""Test equipment: a scripted OpenAI-compatible HTTP server on loopback.

It answers POST /v1/chat/completions like an OpenAI endpoint, after an optional delay, and can
be told to misbehave: answer 429 with Retry-After, 5xx, 401, a slow reply, or a 200 whose body
is broken JSON. It records every request (arrival time, body, what it answered) and whether
the client was still there to receive the answer, so tests can count calls and repeats.

It is an HTTP server written for the tests, not a stand-in for Winnow code: the engine under
test talks to it through the real `openai` client over real sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the completion text (status 200)
    body: bytes | None = None  # raw body instead (broken JSON, error bodies)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"


def default_responder(body: dict) -> str:
    last = body["messages"][-1]["content"]
    return f"Echo: {last[:40]}"


def request_key(body: dict) -> str:
    """What identifies a request: messages and sampling parameters."""
    material = {k: v for k, v in body.items() if k != "stream"}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


class LoopbackServer:
    """with LoopbackServer(responder=..., delay=0.0, script=[Reply(429, ...), ...]) as server:
    server.base_url  ->  http://127.0.0.1:PORT/v1

    `script` replies are used first, one per request, in arrival order; then `responder(body)`
    (returning a str or a Reply) answers.
    """

    def __init__(self, responder=default_responder, *, delay: float = 0.0, script: list[Reply] | None = None,
                 hold_after: int | None = None, port: int = 0):
        self.responder = responder
        # After this many answers, hold every further request until release(): a test can then
        # kill the client at a known point (everything answered so far, nothing more).
        self.hold_after = hold_after
        self._released: asyncio.Event | None = None
        self.delay = delay
        self.script = list(script or [])
        self.log: list[dict] = []
        self.answered: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = None
        self.port = None
        self._bind_port = port  # 0: any free port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self._server is None:
            return

        async def close():
            self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._server = None

    def release(self) -> None:
        self.hold_after = None
        self._loop.call_soon_threadsafe(self._released.set)

    async def _start(self):
        self._released = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._bind_port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- counting ----------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        return len(self.log)

    def repeats(self) -> int:
        """Requests answered more than once (each extra answer counts)."""
        return sum(n - 1 for n in self.answered.values() if n > 1)

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                status, extra, payload = await self._respond(method, path, raw, reader, headers)
                if status is None:  # the client went away before the answer was ready
                    break
                out = [f"HTTP/1.1 {status} X", "content-type: application/json",
                       f"content-length: {len(payload)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, raw: bytes, reader, headers: dict):
        if method == "GET" and path.rstrip("/").endswith("/health"):
            return 200, {}, b'{"status": "ok"}'
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, {}, b'{"error": {"message": "not found"}}'
        body = json.loads(raw or b"{}")
        key = request_key(body)
        with self._lock:
            reply = self.script.pop(0) if self.script else None
            entry = {"at": time.monotonic(), "key": key, "body": body,
                     "authorization": headers.get("authorization", "")}
            self.log.append(entry)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if reply is None:
                made = self.responder(body)
                reply = made if isinstance(made, Reply) else Reply(text=made)
            delay = reply.delay or self.delay
            if delay:
                await asyncio.sleep(delay)
            if self.hold_after is not None and sum(self.answered.values()) >= self.hold_after:
                entry["held"] = True
                await self._released.wait()
            if reader.at_eof():
                entry["status"] = "client gone"
                return None, {}, b""
            entry["status"] = reply.status
            if reply.body is not None:
                payload = reply.body
            elif reply.status == 200:
                text = reply.text or ""
                payload = json.dumps({
                    "id": f"cmpl-{len(self.log)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": reply.finish_reason}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": max(1, len(text.split())),
                              "total_tokens": 10 + max(1, len(text.split()))},
                }).encode()
            else:
                payload = json.dumps({"error": {"message": f"scripted {reply.status}", "type": "test"}}).encode()
            if reply.status == 200:
                with self._lock:
                    self.answered[key] += 1
            return reply.status, reply.headers, payload
        finally:
            with self._lock:
                self.in_flight -= 1


def main() -> None:
    """Run a fixed-delay server in a process of its own (bench/generation_bench.py): prints
    its port, then serves until killed."""
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    with LoopbackServer(delay=args.delay) as server:
        print(server.port, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
