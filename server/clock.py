"""The server's clock in UNIX seconds; one place, so tests can move time."""

from __future__ import annotations

import asyncio
import time

__all__ = ["now", "sleep_until"]


def now() -> int:
    """Current UNIX time in whole seconds."""
    return int(time.time())


async def sleep_until(t: int) -> None:
    """Sleep until wall-clock second ``t`` has begun, at most one second."""
    await asyncio.sleep(min(1.0, max(0.0, t - time.time())))
