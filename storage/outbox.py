"""The durable per-session event outbox (PROTOCOL.md section 8).

Each event gets the session's next sequence number inside the transaction that
stores it, so numbers only grow, also across restarts. Trimming to the limits
records how far events were dropped, which makes a resume over the gap fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .db import Connection

__all__ = [
    "delete_orphan_payloads",
    "OutboxEvent",
    "acknowledge",
    "append",
    "delete_through",
    "get_events",
    "pending",
    "reset_dropped",
    "trim_by_age",
]


# Sessions numbered per statement: below SQLite's limit of bound parameters.
_CHUNK: Final = 10_000


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    session_ref: int
    seq: int
    op: int
    data: bytes


async def append(
    conn: Connection,
    session_refs: Sequence[int],
    op: int,
    data: bytes,
    *,
    now: int,
    max_events: int,
) -> list[OutboxEvent]:
    """Store one event for each live session in ``session_refs``, numbered."""
    if not session_refs:
        return []
    numbered: list[tuple[int, int]] = []
    for start in range(0, len(session_refs), _CHUNK):
        chunk = tuple(session_refs[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        async with conn.execute(
            "UPDATE sessions SET next_seq = next_seq + 1 "
            f"WHERE id IN ({marks}) AND ended_at IS NULL RETURNING id, next_seq - 1",
            chunk,
        ) as cursor:
            numbered += [(int(ref), int(seq)) for ref, seq in await cursor.fetchall()]
    if not numbered:
        return []
    cursor = await conn.execute(
        "INSERT INTO event_payloads (op, data) VALUES (?, ?)", (op, data)
    )
    event_id = cursor.lastrowid
    await conn.executemany(
        "INSERT INTO outbox (session_ref, seq, event_id, created_at) "
        "VALUES (?, ?, ?, ?)",
        [(ref, seq, event_id, now) for ref, seq in numbered],
    )
    limits = [(ref, seq - max_events) for ref, seq in numbered if seq >= max_events]
    if limits:
        await _drop_through(conn, limits)
    numbered.sort()
    return [OutboxEvent(ref, seq, op, data) for ref, seq in numbered]


async def _drop_through(conn: Connection, limits: Iterable[tuple[int, int]]) -> None:
    params = [{"ref": ref, "through": through} for ref, through in limits]
    await conn.executemany(
        "UPDATE sessions SET "
        "dropped_pending = dropped_pending + (SELECT count(*) FROM outbox "
        "  WHERE session_ref = :ref AND seq <= :through), "
        "dropped_through = max(dropped_through, coalesce((SELECT max(seq) FROM outbox "
        "  WHERE session_ref = :ref AND seq <= :through), -1)) "
        "WHERE id = :ref",
        params,
    )
    await conn.executemany(
        "DELETE FROM outbox WHERE session_ref = :ref AND seq <= :through", params
    )


async def trim_by_age(conn: Connection, older_than: int) -> int:
    """Drop events created before ``older_than``; return how many."""
    await conn.execute(
        "UPDATE sessions SET dropped_pending = dropped_pending + d.n, "
        "dropped_through = max(dropped_through, d.m) "
        "FROM (SELECT session_ref, count(*) AS n, max(seq) AS m FROM outbox "
        "      WHERE created_at < ? GROUP BY session_ref) AS d "
        "WHERE sessions.id = d.session_ref",
        (older_than,),
    )
    cursor = await conn.execute(
        "DELETE FROM outbox WHERE created_at < ?", (older_than,)
    )
    return int(cursor.rowcount)


async def pending(
    conn: Connection, session_ref: int, *, after: int = -1, limit: int = -1
) -> list[OutboxEvent]:
    """Undelivered events of a session numbered above ``after``, oldest first."""
    async with conn.execute(
        "SELECT o.seq, p.op, p.data FROM outbox o "
        "JOIN event_payloads p ON p.id = o.event_id "
        "WHERE o.session_ref = ? AND o.seq > ? "
        "ORDER BY o.seq LIMIT ?",
        (session_ref, after, limit),
    ) as cursor:
        rows = await cursor.fetchall()
    return [OutboxEvent(session_ref, seq, op, data) for seq, op, data in rows]


async def delete_through(conn: Connection, session_ref: int, seq: int) -> None:
    """Remove every event numbered ``seq`` or lower: they were delivered."""
    await conn.execute(
        "DELETE FROM outbox WHERE session_ref = ? AND seq <= ?", (session_ref, seq)
    )


async def acknowledge(
    conn: Connection, session_ref: int, first: int, last: int, excluded: Sequence[int]
) -> None:
    """Remove events ``first``..``last`` except those in ``excluded``."""
    excluded_set = set(excluded)
    if not excluded_set:
        await conn.execute(
            "DELETE FROM outbox WHERE session_ref = ? AND seq BETWEEN ? AND ?",
            (session_ref, first, last),
        )
        return
    marks = ",".join("?" * len(excluded_set))
    await conn.execute(
        "DELETE FROM outbox WHERE session_ref = ? AND seq BETWEEN ? AND ? "
        f"AND seq NOT IN ({marks})",
        (session_ref, first, last, *sorted(excluded_set)),
    )


async def reset_dropped(conn: Connection, session_ref: int) -> int:
    """Return and clear how many events were dropped since the last delivery."""
    async with conn.execute(
        "SELECT dropped_pending FROM sessions WHERE id = ?", (session_ref,)
    ) as cursor:
        row = await cursor.fetchone()
    dropped = int(row[0]) if row else 0
    if dropped:
        await conn.execute(
            "UPDATE sessions SET dropped_pending = 0 WHERE id = ?", (session_ref,)
        )
    return dropped


async def get_events(
    conn: Connection, session_ref: int, seqs: Sequence[int]
) -> list[OutboxEvent]:
    """The still stored events of a session with the given numbers, in order."""
    if not seqs:
        return []
    marks = ",".join("?" * len(seqs))
    async with conn.execute(
        "SELECT o.seq, p.op, p.data FROM outbox o "
        "JOIN event_payloads p ON p.id = o.event_id "
        f"WHERE o.session_ref = ? AND o.seq IN ({marks}) ORDER BY o.seq",
        (session_ref, *seqs),
    ) as cursor:
        rows = await cursor.fetchall()
    return [OutboxEvent(session_ref, seq, op, data) for seq, op, data in rows]


async def delete_orphan_payloads(conn: Connection) -> int:
    """Delete payloads no outbox row refers to any more; return how many."""
    cursor = await conn.execute(
        "DELETE FROM event_payloads WHERE id NOT IN (SELECT event_id FROM outbox)"
    )
    return int(cursor.rowcount)
