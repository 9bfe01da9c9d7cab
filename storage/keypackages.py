"""MLS KeyPackages stored for sessions, claimed one at a time."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from .db import Connection
from .errors import InitKeyTaken

__all__ = [
    "Claim",
    "StoredKeyPackage",
    "add",
    "claim",
    "delete_for_session",
    "delete_last_resort",
    "replace_last_resort",
]


@dataclass(frozen=True, slots=True)
class StoredKeyPackage:
    """A verified KeyPackage as stored: its init key, encoding and expiry."""

    init_key: bytes
    data: bytes
    not_after: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim handed out for one session, and the stock it left."""

    data: bytes
    remaining: int
    last_resort_used: bool


async def add(
    conn: Connection, session_ref: int, packages: Sequence[StoredKeyPackage]
) -> None:
    """Store regular KeyPackages of a session.

    Run it inside a transaction and roll back on error: when a duplicate stops the
    batch, the rows before it are already written.

    Raises:
        InitKeyTaken: one of the init keys is already on this server.
    """
    await _refuse_used(conn, [p.init_key for p in packages])
    try:
        await conn.executemany(
            "INSERT INTO keypackages (session_ref, init_key, data, not_after) "
            "VALUES (?, ?, ?, ?)",
            [(session_ref, p.init_key, p.data, p.not_after) for p in packages],
        )
    except sqlite3.IntegrityError as exc:
        raise InitKeyTaken("init_key is already in use") from exc


async def replace_last_resort(
    conn: Connection, session_ref: int, package: StoredKeyPackage
) -> None:
    """Replace the session's last-resort KeyPackage.

    Run it inside a transaction and roll back on error: the old one is deleted
    before the new one is written.

    Raises:
        InitKeyTaken: the init key is already on this server.
    """
    await _refuse_used(conn, [package.init_key])
    await delete_last_resort(conn, session_ref)
    try:
        await conn.execute(
            "INSERT INTO keypackages (session_ref, init_key, data, not_after, "
            "is_last_resort) VALUES (?, ?, ?, ?, 1)",
            (session_ref, package.init_key, package.data, package.not_after),
        )
    except sqlite3.IntegrityError as exc:
        raise InitKeyTaken("init_key is already in use") from exc


async def claim(conn: Connection, session_ref: int, now: int) -> Claim | None:
    """Take the session's oldest regular KeyPackage, else its last resort.

    Expired KeyPackages are purged first and never handed out. Must run inside a
    write transaction so that no KeyPackage is handed out twice.
    """
    await conn.execute(
        "DELETE FROM keypackages WHERE session_ref = ? AND not_after < ?",
        (session_ref, now),
    )
    async with conn.execute(
        "DELETE FROM keypackages WHERE id = (SELECT id FROM keypackages "
        "WHERE session_ref = ? AND is_last_resort = 0 ORDER BY id LIMIT 1) "
        "RETURNING data, init_key",
        (session_ref,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is not None:
        await conn.execute(
            "INSERT OR IGNORE INTO used_init_keys (init_key, used_at) VALUES (?, ?)",
            (row[1], now),
        )
        async with conn.execute(
            "SELECT count(*) FROM keypackages WHERE session_ref = ? "
            "AND is_last_resort = 0",
            (session_ref,),
        ) as cursor:
            count = await cursor.fetchone()
        assert count is not None
        return Claim(bytes(row[0]), int(count[0]), False)
    async with conn.execute(
        "SELECT data FROM keypackages WHERE session_ref = ? AND is_last_resort = 1",
        (session_ref,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    return Claim(bytes(row[0]), 0, True)


async def delete_last_resort(conn: Connection, session_ref: int) -> None:
    """Delete the session's last-resort KeyPackage, if it has one."""
    await conn.execute(
        "DELETE FROM keypackages WHERE session_ref = ? AND is_last_resort = 1",
        (session_ref,),
    )


async def delete_for_session(conn: Connection, session_ref: int) -> int:
    """Delete every KeyPackage of a session, last resort included; return how many.

    For a key rotation: KeyPackages signed with the old key must not be handed out.
    """
    cursor = await conn.execute(
        "DELETE FROM keypackages WHERE session_ref = ?", (session_ref,)
    )
    return int(cursor.rowcount)


async def _refuse_used(conn: Connection, init_keys: Sequence[bytes]) -> None:
    """Raise if any init key belongs to a KeyPackage that was handed out before.

    Raises:
        InitKeyTaken: a KeyPackage with one of these init keys was already claimed.
    """
    marks = ",".join("?" * len(init_keys))
    async with conn.execute(
        f"SELECT 1 FROM used_init_keys WHERE init_key IN ({marks}) LIMIT 1",
        tuple(init_keys),
    ) as cursor:
        if await cursor.fetchone() is not None:
            raise InitKeyTaken("init_key was already used by a claimed keypackage")
