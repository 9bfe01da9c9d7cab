"""Tests of the KeyPackage repository (storage/keypackages.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import keypackages as kp_store
from storage import sessions as session_store
from storage.db import Connection, Database
from storage.errors import InitKeyTaken
from storage.keypackages import Claim, StoredKeyPackage

NOW = 1_700_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "p2core.sqlite3")
    yield database
    await database.close()


async def new_session(db: Database, session_id: str = "s1") -> int:
    async with db.transaction() as conn:
        session = await session_store.create_session(
            conn, "alice@example.com", session_id, is_foreign=False, now=NOW
        )
    return session.id


def package(tag: bytes = b"", *, not_after: int = NOW + 1000) -> StoredKeyPackage:
    init_key = os.urandom(32)
    return StoredKeyPackage(init_key, b"kp:" + tag + init_key, not_after)


async def count(conn: Connection, session_ref: int) -> int:
    async with conn.execute(
        "SELECT count(*) FROM keypackages WHERE session_ref = ?", (session_ref,)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0])


async def test_keypackages_claim_takes_oldest_first(db: Database) -> None:
    ref = await new_session(db)
    packages = [package(b"a"), package(b"b"), package(b"c")]
    async with db.transaction() as conn:
        await kp_store.add(conn, ref, packages)

    async with db.transaction() as conn:
        claims = [await kp_store.claim(conn, ref, NOW) for _ in range(4)]

    assert claims == [
        Claim(packages[0].data, 2, False),
        Claim(packages[1].data, 1, False),
        Claim(packages[2].data, 0, False),
        None,
    ]


async def test_keypackages_claim_without_any_returns_none(db: Database) -> None:
    ref = await new_session(db)

    async with db.transaction() as conn:
        assert await kp_store.claim(conn, ref, NOW) is None


async def test_keypackages_claim_keeps_last_resort(db: Database) -> None:
    ref = await new_session(db)
    regular, last_resort = package(b"r"), package(b"lr")
    async with db.transaction() as conn:
        await kp_store.add(conn, ref, [regular])
        await kp_store.replace_last_resort(conn, ref, last_resort)

    async with db.transaction() as conn:
        claims = [await kp_store.claim(conn, ref, NOW) for _ in range(3)]

    assert claims == [
        Claim(regular.data, 0, False),
        Claim(last_resort.data, 0, True),
        Claim(last_resort.data, 0, True),
    ]


async def test_keypackages_replace_last_resort_keeps_one(db: Database) -> None:
    ref = await new_session(db)
    first, second = package(b"1"), package(b"2")

    async with db.transaction() as conn:
        await kp_store.replace_last_resort(conn, ref, first)
        await kp_store.replace_last_resort(conn, ref, second)
        await kp_store.replace_last_resort(conn, ref, second)

    async with db.transaction() as conn:
        assert await count(conn, ref) == 1
        assert await kp_store.claim(conn, ref, NOW) == Claim(second.data, 0, True)


async def test_keypackages_add_rejects_stored_init_key(db: Database) -> None:
    s1, s2 = await new_session(db, "s1"), await new_session(db, "s2")
    taken = package(b"taken")
    async with db.transaction() as conn:
        await kp_store.add(conn, s1, [taken])
    again = StoredKeyPackage(taken.init_key, b"other", NOW + 1000)

    with pytest.raises(InitKeyTaken, match="init_key is already in use"):
        async with db.transaction() as conn:
            await kp_store.add(conn, s2, [package(b"fresh"), again])

    async with db.transaction() as conn:
        assert await count(conn, s1) == 1
        assert await count(conn, s2) == 0


async def test_keypackages_add_rejects_init_key_repeated_in_batch(
    db: Database,
) -> None:
    ref = await new_session(db)
    first = package()
    twin = StoredKeyPackage(first.init_key, b"twin", NOW + 1000)

    with pytest.raises(InitKeyTaken, match="init_key is already in use"):
        async with db.transaction() as conn:
            await kp_store.add(conn, ref, [first, twin])

    async with db.transaction() as conn:
        assert await count(conn, ref) == 0


async def test_keypackages_replace_last_resort_rejects_taken_init_key(
    db: Database,
) -> None:
    ref = await new_session(db)
    regular, old = package(b"r"), package(b"old")
    async with db.transaction() as conn:
        await kp_store.add(conn, ref, [regular])
        await kp_store.replace_last_resort(conn, ref, old)
    clash = StoredKeyPackage(regular.init_key, b"clash", NOW + 1000)

    with pytest.raises(InitKeyTaken, match="init_key is already in use"):
        async with db.transaction() as conn:
            await kp_store.replace_last_resort(conn, ref, clash)

    async with db.transaction() as conn:
        await kp_store.claim(conn, ref, NOW)
        assert await kp_store.claim(conn, ref, NOW) == Claim(old.data, 0, True)


async def test_keypackages_claim_purges_expired(db: Database) -> None:
    ref = await new_session(db)
    expired = package(b"old", not_after=NOW - 1)
    at_edge = package(b"edge", not_after=NOW)
    async with db.transaction() as conn:
        await kp_store.add(conn, ref, [expired, at_edge])
        await kp_store.replace_last_resort(conn, ref, package(b"lr", not_after=NOW - 1))

    async with db.transaction() as conn:
        first = await kp_store.claim(conn, ref, NOW)
        second = await kp_store.claim(conn, ref, NOW)
        left = await count(conn, ref)

    assert first == Claim(at_edge.data, 0, False)
    assert second is None
    assert left == 0


async def test_keypackages_claim_leaves_other_sessions_alone(db: Database) -> None:
    s1, s2 = await new_session(db, "s1"), await new_session(db, "s2")
    async with db.transaction() as conn:
        await kp_store.add(conn, s1, [package(b"1", not_after=NOW - 1)])
        await kp_store.add(conn, s2, [package(b"2", not_after=NOW - 1), package()])

    async with db.transaction() as conn:
        assert await kp_store.claim(conn, s1, NOW) is None
        assert await count(conn, s2) == 2


async def test_keypackages_delete_last_resort_keeps_regular(db: Database) -> None:
    ref = await new_session(db)
    regular = package(b"r")
    async with db.transaction() as conn:
        await kp_store.add(conn, ref, [regular])
        await kp_store.replace_last_resort(conn, ref, package(b"lr"))

    async with db.transaction() as conn:
        await kp_store.delete_last_resort(conn, ref)
        await kp_store.delete_last_resort(conn, ref)

    async with db.transaction() as conn:
        assert await kp_store.claim(conn, ref, NOW) == Claim(regular.data, 0, False)
        assert await kp_store.claim(conn, ref, NOW) is None


async def test_keypackages_delete_for_session_removes_all(db: Database) -> None:
    s1, s2 = await new_session(db, "s1"), await new_session(db, "s2")
    async with db.transaction() as conn:
        await kp_store.add(conn, s1, [package(), package()])
        await kp_store.replace_last_resort(conn, s1, package())
        await kp_store.add(conn, s2, [package()])

    async with db.transaction() as conn:
        deleted = await kp_store.delete_for_session(conn, s1)

    assert deleted == 3
    async with db.transaction() as conn:
        assert await count(conn, s1) == 0
        assert await count(conn, s2) == 1
