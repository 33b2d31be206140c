"""Token buckets for requests-per-minute and tokens-per-minute limits (asyncio)."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Holds up to `per_minute` tokens and refills at per_minute/60 a second.

    `acquire(n)` waits until n tokens are there. Token counts are estimates before a request
    (prompt size + max_tokens) and corrected after it with `adjust` (the usage the endpoint
    reported), so the bucket may go negative and later callers wait it off.
    """

    def __init__(self, per_minute: float, *, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0
        self.tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        amount = min(float(amount), self.capacity)  # a request bigger than a minute's budget still runs
        # One waiter at a time: first come, first served, and no thundering herd of sleepers.
        async with self._lock:
            while True:
                self._refill()
                if self.tokens >= amount:
                    self.tokens -= amount
                    return
                await asyncio.sleep((amount - self.tokens) / self.rate)

    def adjust(self, extra: float) -> None:
        """Take `extra` more tokens (negative: give some back) once the real cost is known."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - extra)
