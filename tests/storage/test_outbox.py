"""Tests of the durable per-session event outbox (``storage/outbox.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from storage import outbox
from storage import sessions as session_store
from storage.db import Database
from storage.outbox import OutboxEvent
from storage.sessions import Session

T0: Final = 1_700_000_000
OP: Final = 14
LIMIT: Final = 1000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "p2core.sqlite3")
    yield database
    await database.close()


async def new_session(db: Database, session_id: str, fid: str = "a@x.org") -> int:
    async with db.transaction() as conn:
        session = await session_store.create_session(
            conn, fid, session_id, is_foreign=False, now=T0
        )
    return session.id


async def append(
    db: Database,
    refs: list[int],
    data: bytes = b"{}",
    *,
    now: int = T0,
    max_events: int = LIMIT,
) -> list[OutboxEvent]:
    async with db.transaction() as conn:
        return await outbox.append(conn, refs, OP, data, now=now, max_events=max_events)


async def stored(db: Database, ref: int) -> list[int]:
    return [e.seq for e in await outbox.pending(db.reader, ref)]


async def session_row(db: Database, ref: int) -> Session:
    session = await session_store.get_session(db.reader, ref)
    assert session is not None
    return session


async def test_append_numbers_each_session_from_zero(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    first = await append(db, [b, a], b'{"k":1}')
    assert first == [
        OutboxEvent(a, 0, OP, b'{"k":1}'),
        OutboxEvent(b, 0, OP, b'{"k":1}'),
    ]
    await append(db, [a])
    second = await append(db, [a, b], b"[]")
    assert second == [OutboxEvent(a, 2, OP, b"[]"), OutboxEvent(b, 1, OP, b"[]")]
    assert await outbox.pending(db.reader, b) == [
        OutboxEvent(b, 0, OP, b'{"k":1}'),
        OutboxEvent(b, 1, OP, b"[]"),
    ]
    assert (await session_row(db, a)).next_seq == 3


async def test_append_no_sessions_stores_nothing(db: Database) -> None:
    assert await append(db, []) == []


async def test_append_ended_session_stores_nothing(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    await append(db, [a])
    async with db.transaction() as conn:
        await session_store.end_session(conn, a, T0 + 1)
    assert await stored(db, a) == []
    assert await append(db, [a, b]) == [OutboxEvent(b, 0, OP, b"{}")]
    assert await stored(db, a) == []


async def test_append_numbers_keep_growing_after_delivery(db: Database) -> None:
    a = await new_session(db, "s1")
    for _ in range(3):
        await append(db, [a])
    async with db.transaction() as conn:
        await outbox.delete_through(conn, a, 2)
    assert await stored(db, a) == []
    assert await append(db, [a]) == [OutboxEvent(a, 3, OP, b"{}")]


async def test_append_numbers_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    first = await Database.open(path)
    try:
        a = await new_session(first, "s1")
        await append(first, [a])
    finally:
        await first.close()
    reopened = await Database.open(path)
    try:
        assert await stored(reopened, a) == [0]
        assert await append(reopened, [a]) == [OutboxEvent(a, 1, OP, b"{}")]
    finally:
        await reopened.close()


async def test_append_over_limit_drops_oldest_and_records_gap(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    for _ in range(5):
        await append(db, [a, b], max_events=3)
    for ref in (a, b):
        assert await stored(db, ref) == [2, 3, 4]
        session = await session_row(db, ref)
        assert (session.dropped_through, session.dropped_pending) == (1, 2)


async def test_append_over_limit_ignores_delivered_events(db: Database) -> None:
    a = await new_session(db, "s1")
    for _ in range(3):
        await append(db, [a], max_events=3)
    async with db.transaction() as conn:
        await outbox.acknowledge(conn, a, 0, 1, ())
    await append(db, [a], max_events=3)
    await append(db, [a], max_events=3)
    assert await stored(db, a) == [2, 3, 4]
    session = await session_row(db, a)
    assert (session.dropped_through, session.dropped_pending) == (-1, 0)
    await append(db, [a], max_events=3)
    session = await session_row(db, a)
    assert (session.dropped_through, session.dropped_pending) == (2, 1)


async def test_pending_after_and_limit_page_in_order(db: Database) -> None:
    a = await new_session(db, "s1")
    for i in range(6):
        await append(db, [a], b"%d" % i)
    page = await outbox.pending(db.reader, a, after=1, limit=3)
    assert page == [OutboxEvent(a, s, OP, b"%d" % s) for s in (2, 3, 4)]
    assert [e.seq for e in await outbox.pending(db.reader, a, after=4)] == [5]
    assert await outbox.pending(db.reader, a, after=5) == []


@pytest.mark.parametrize(
    ("first", "last", "excluded", "left"),
    [
        (0, 4, (), []),
        (1, 3, (), [0, 4]),
        (0, 4, (1, 3), [1, 3]),
        (0, 4, (3, 3, 1), [1, 3]),
        (2, 2, (2,), [0, 1, 2, 3, 4]),
        (5, 9, (), [0, 1, 2, 3, 4]),
    ],
)
async def test_acknowledge_removes_range_except_excluded(
    db: Database,
    first: int,
    last: int,
    excluded: tuple[int, ...],
    left: list[int],
) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    for _ in range(5):
        await append(db, [a, b])
    async with db.transaction() as conn:
        await outbox.acknowledge(conn, a, first, last, excluded)
    assert await stored(db, a) == left
    assert await stored(db, b) == [0, 1, 2, 3, 4]


async def test_get_events_returns_stored_ones_in_order(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    for _ in range(4):
        await append(db, [a, b])
    async with db.transaction() as conn:
        await outbox.delete_through(conn, a, 0)
    events = await outbox.get_events(db.reader, a, [3, 0, 9, 1])
    assert [(e.session_ref, e.seq) for e in events] == [(a, 1), (a, 3)]
    assert await outbox.get_events(db.reader, a, []) == []


async def test_delete_through_keeps_later_events(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    for _ in range(4):
        await append(db, [a, b])
    async with db.transaction() as conn:
        await outbox.delete_through(conn, a, 1)
    assert await stored(db, a) == [2, 3]
    assert await stored(db, b) == [0, 1, 2, 3]


async def test_reset_dropped_returns_count_once(db: Database) -> None:
    a = await new_session(db, "s1")
    for _ in range(4):
        await append(db, [a], max_events=2)
    async with db.transaction() as conn:
        assert await outbox.reset_dropped(conn, a) == 2
        assert await outbox.reset_dropped(conn, a) == 0
        assert await outbox.reset_dropped(conn, 999) == 0
    session = await session_row(db, a)
    assert (session.dropped_through, session.dropped_pending) == (1, 0)


async def test_trim_by_age_drops_old_events_and_records_gap(db: Database) -> None:
    a, b = await new_session(db, "s1"), await new_session(db, "s2")
    await append(db, [a, b], now=T0)
    await append(db, [a], now=T0 + 10)
    await append(db, [a, b], now=T0 + 20)
    async with db.transaction() as conn:
        assert await outbox.trim_by_age(conn, T0 + 15) == 3
    assert await stored(db, a) == [2]
    assert await stored(db, b) == [1]
    session_a, session_b = await session_row(db, a), await session_row(db, b)
    assert (session_a.dropped_through, session_a.dropped_pending) == (1, 2)
    assert (session_b.dropped_through, session_b.dropped_pending) == (0, 1)
    async with db.transaction() as conn:
        assert await outbox.trim_by_age(conn, T0 + 15) == 0
    assert (await session_row(db, a)).dropped_pending == 2
