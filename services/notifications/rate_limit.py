"""Token buckets, one per SMTP server and per webhook endpoint.

A bucket never makes a sender sleep for long: `try_acquire` takes a token only if one is free
within `max_wait`; otherwise the worker puts the delivery back with `retry_in()` as its delay.
So a slow or throttled endpoint holds no send slot, and other recipients are not held up.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; rate 0 means no limit.

    Kept as the time the bucket is "paid up to" (GCRA), which is exact and O(1) per call.
    """

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(1, burst)
        self.clock = clock
        self._paid_until = 0.0

    def retry_in(self) -> float:
        """Seconds until a token is free, without taking it."""
        if not self.interval:
            return 0.0
        now = self.clock()
        paid = max(self._paid_until, now)
        return max(0.0, paid + self.interval - now - self.burst * self.interval)

    def try_acquire(self, max_wait: float) -> float | None:
        """Take a token usable after the returned delay, or None (nothing taken) when the
        delay would exceed `max_wait`."""
        wait = self.retry_in()
        if wait > max_wait:
            return None
        if self.interval:
            self._paid_until = max(self._paid_until, self.clock()) + self.interval
        return wait


class RateLimits:
    """Buckets created on first use, keyed by "smtp://host:port" or a webhook origin."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str) -> TokenBucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return found
