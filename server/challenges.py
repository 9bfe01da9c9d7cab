"""Challenge strings for foreign-server authentication (core spec section 4.3)."""

from __future__ import annotations

import secrets
import string
from collections import OrderedDict
from typing import Final

__all__ = ["CHALLENGE_LIFETIME", "ChallengeStore", "new_challenge"]

CHALLENGE_LIFETIME: Final = 300
_ALPHABET: Final = string.ascii_letters + string.digits
_LENGTH: Final = 64
_TO_ALPHABET: Final = bytes(ord(_ALPHABET[i % 62]) for i in range(256))
_UNEVEN: Final = bytes(range(248, 256))


def new_challenge() -> str:
    """64 random alphanumeric characters with lower, upper case and digits present.

    One bulk draw from the OS: bytes from 248 up are dropped (248 = 4 * 62), so
    each of the 62 characters stays equally likely.
    """
    while True:
        raw = secrets.token_bytes(_LENGTH * 2)
        value = raw.translate(_TO_ALPHABET, _UNEVEN).decode()[:_LENGTH]
        if (
            len(value) == _LENGTH
            and any(c.islower() for c in value)
            and any(c.isupper() for c in value)
            and any(c.isdigit() for c in value)
        ):
            return value


class ChallengeStore:
    """Live challenges in memory: each is valid for a while and consumed once.

    Consuming is a synchronous dict operation, so of two identifies racing on one
    challenge in this event loop exactly one gets it.
    """

    def __init__(self, lifetime: int = CHALLENGE_LIFETIME, max_live: int = 100_000):
        self._lifetime = lifetime
        self._max_live = max_live
        # An OrderedDict, not a dict: taking the oldest entry stays O(1) however
        # many were removed from the front before (a dict skips dead slots).
        self._expiry: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def issue(self, now: int) -> tuple[str, int]:
        """Create a challenge; return it with its expiry time (UNIX seconds)."""
        self._purge(now)
        value = new_challenge()
        expires = now + self._lifetime
        self._expiry[value] = expires
        return value, expires

    def consume(self, value: str, now: int) -> bool:
        """Take a challenge: True only once, and only before it expires."""
        expires = self._expiry.pop(value, None)
        return expires is not None and now <= expires

    def _purge(self, now: int) -> None:
        # Insertion order equals expiry order: every challenge lives equally long.
        expiry = self._expiry
        while expiry:
            _, expires = next(iter(expiry.items()))
            if expires >= now and len(expiry) < self._max_live:
                break
            expiry.popitem(last=False)
