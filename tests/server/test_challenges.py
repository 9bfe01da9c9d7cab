"""Challenge strings and their store (core spec section 4.3)."""

from __future__ import annotations

import string
from collections import Counter

from server.challenges import ChallengeStore, new_challenge

ALPHABET = set(string.ascii_letters + string.digits)


def test_new_challenge_is_64_alphanumerics_of_all_classes() -> None:
    for _ in range(200):
        value = new_challenge()
        assert len(value) == 64
        assert set(value) <= ALPHABET
        assert any(c.islower() for c in value)
        assert any(c.isupper() for c in value)
        assert any(c.isdigit() for c in value)


def test_new_challenge_uses_every_character_about_equally() -> None:
    counts = Counter("".join(new_challenge() for _ in range(5000)))
    assert set(counts) == ALPHABET
    expected = 5000 * 64 / 62
    assert all(0.85 * expected < n < 1.15 * expected for n in counts.values())


def test_store_consumes_a_challenge_once() -> None:
    store = ChallengeStore()
    value, expires = store.issue(1000)
    assert expires == 1300
    assert store.consume(value, 1001) is True
    assert store.consume(value, 1001) is False


def test_store_refuses_expired_and_unknown_challenges() -> None:
    store = ChallengeStore()
    value, _ = store.issue(1000)
    assert store.consume(value, 1301) is False
    assert store.consume("A1b" * 22, 1000) is False


def test_store_purges_expired_and_caps_live_challenges() -> None:
    store = ChallengeStore(max_live=3)
    for _ in range(5):
        store.issue(1000)
    assert len(store) == 3
    store.issue(2000)
    assert len(store) == 1
