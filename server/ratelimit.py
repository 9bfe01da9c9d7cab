"""Per-client token buckets for the routes that take credentials."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allow ``rate_per_minute`` requests per key, with bursts of the same size."""

    def __init__(self, rate_per_minute: int, *, max_keys: int = 100_000) -> None:
        if rate_per_minute < 1:
            raise ValueError(f"rate must be positive, got {rate_per_minute!r}")
        self._capacity = float(rate_per_minute)
        self._per_second = rate_per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def check(self, key: str, now: float | None = None) -> int:
        """Take a token for ``key``; return 0, or the seconds to wait."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        else:
            elapsed = now - bucket.updated
            bucket.tokens = min(
                self._capacity, bucket.tokens + elapsed * self._per_second
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self._per_second))

    def _evict(self, now: float) -> None:
        """Forget buckets that have refilled; they behave like new ones."""
        full_after = self._capacity / self._per_second
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
