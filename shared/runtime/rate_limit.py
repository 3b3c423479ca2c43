"""Token buckets: per SMTP server and webhook endpoint (notifications), per tenant (HTTP ingress).

A bucket never makes anyone sleep for long: `try_acquire` takes tokens only if they are free
within `max_wait`; otherwise the caller answers later (a delivery put back with `retry_in()` as its
delay, an HTTP 429 with `Retry-After`). So a slow endpoint holds no send slot, and one tenant's
bulk load does not hold up the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ROUNDING = 1e-6  # seconds: a shorter wait is the rounding of floats (clock readings of months)


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

    def retry_in(self, tokens: int = 1) -> float:
        """Seconds until `tokens` tokens are free, without taking them."""
        if not self.interval:
            return 0.0
        now = self.clock()
        # Differences of clock readings first: `now + 1000 - now` is not always 1000 in floats,
        # and a wait of a few picoseconds would refuse a full burst to a fresh bucket.
        wait = (max(self._paid_until, now) - now) + (tokens - self.burst) * self.interval
        return wait if wait > ROUNDING else 0.0

    def try_acquire(self, max_wait: float, tokens: int = 1) -> float | None:
        """Take `tokens` tokens usable after the returned delay, or None (nothing taken) when
        the delay would exceed `max_wait`."""
        wait = self.retry_in(tokens)
        if wait > max_wait:
            return None
        if self.interval:
            self._paid_until = max(self._paid_until, self.clock()) + tokens * self.interval
        return wait


class RateLimits:
    """Buckets created on first use, keyed by what is limited ("smtp://host:port", a webhook
    origin, a tenant)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str) -> TokenBucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return found
