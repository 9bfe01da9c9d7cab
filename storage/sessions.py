"""Sessions (home and foreign) and their bearer tokens."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from .certs import CERT_COLUMNS, StoredCert
from .db import Connection, Database
from .errors import SessionIDTaken

__all__ = [
    "Session",
    "create_session",
    "delete_tokens",
    "end_session",
    "get_live_session",
    "get_live_session_with_cert",
    "get_session",
    "insert_token",
    "list_live_sessions",
    "renew_token_for_cert",
    "replace_token",
    "live_session_refs",
    "session_for_token",
    "set_current_cert",
]

_COLUMNS = (
    "id, fid, session_id, is_foreign, current_cert_id, created_at, ended_at, "
    "next_seq, dropped_through, dropped_pending"
)


# A session row (s) followed by its current ID-Cert row (c), for joined queries.
_SESSION_AND_CERT_COLUMNS = ", ".join(
    [f"s.{c.strip()}" for c in _COLUMNS.split(",")]
    + [f"c.{c.strip()}" for c in CERT_COLUMNS.split(",")]
)


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    fid: str
    session_id: str
    is_foreign: bool
    current_cert_id: int | None
    created_at: int
    ended_at: int | None
    next_seq: int
    dropped_through: int
    dropped_pending: int

    @classmethod
    def from_row(cls, row: Any) -> Session:
        return cls(
            id=row[0],
            fid=row[1],
            session_id=row[2],
            is_foreign=bool(row[3]),
            current_cert_id=row[4],
            created_at=row[5],
            ended_at=row[6],
            next_seq=row[7],
            dropped_through=row[8],
            dropped_pending=row[9],
        )


async def create_session(
    conn: Connection, fid: str, session_id: str, *, is_foreign: bool, now: int
) -> Session:
    """Insert a live session.

    Raises:
        SessionIDTaken: a live session of ``fid`` already has this session ID.
    """
    try:
        cursor = await conn.execute(
            "INSERT INTO sessions (fid, session_id, is_foreign, created_at) "
            "VALUES (?, ?, ?, ?)",
            (fid, session_id, int(is_foreign), now),
        )
    except sqlite3.IntegrityError as exc:
        raise SessionIDTaken(fid, session_id) from exc
    assert cursor.lastrowid is not None
    return Session(
        cursor.lastrowid, fid, session_id, is_foreign, None, now, None, 0, -1, 0
    )


async def get_session(conn: Connection, session_ref: int) -> Session | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_ref,)
    ) as cursor:
        row = await cursor.fetchone()
    return Session.from_row(row) if row else None


async def get_live_session(
    conn: Connection, fid: str, session_id: str
) -> Session | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM sessions "
        "WHERE fid = ? AND session_id = ? AND ended_at IS NULL",
        (fid, session_id),
    ) as cursor:
        row = await cursor.fetchone()
    return Session.from_row(row) if row else None


async def list_live_sessions(conn: Connection, fid: str | None = None) -> list[Session]:
    """Live sessions of one actor, or of everyone when ``fid`` is None."""
    params: tuple[str, ...] = ()
    if fid is None:
        sql = f"SELECT {_COLUMNS} FROM sessions WHERE ended_at IS NULL"
    else:
        sql = f"SELECT {_COLUMNS} FROM sessions WHERE fid = ? AND ended_at IS NULL"
        params = (fid,)
    async with conn.execute(sql + " ORDER BY id", params) as cursor:
        rows = await cursor.fetchall()
    return [Session.from_row(row) for row in rows]


async def live_session_refs(conn: Connection, fid: str | None = None) -> list[int]:
    """Row ids of the live sessions of one actor, or of everyone if ``fid`` is None."""
    params: tuple[str, ...] = ()
    if fid is None:
        sql = "SELECT id FROM sessions WHERE ended_at IS NULL"
    else:
        sql = "SELECT id FROM sessions WHERE fid = ? AND ended_at IS NULL"
        params = (fid,)
    async with conn.execute(sql + " ORDER BY id", params) as cursor:
        return [int(row[0]) for row in await cursor.fetchall()]


async def set_current_cert(conn: Connection, session_ref: int, cert_id: int) -> None:
    await conn.execute(
        "UPDATE sessions SET current_cert_id = ? WHERE id = ?", (cert_id, session_ref)
    )


async def end_session(conn: Connection, session_ref: int, now: int) -> None:
    """Mark the session ended and delete its tokens, KeyPackages and outbox."""
    await conn.execute(
        "UPDATE sessions SET ended_at = ? WHERE id = ?", (now, session_ref)
    )
    await delete_tokens(conn, session_ref)
    await conn.execute("DELETE FROM keypackages WHERE session_ref = ?", (session_ref,))
    await conn.execute("DELETE FROM outbox WHERE session_ref = ?", (session_ref,))


async def insert_token(
    conn: Connection, token_hash: bytes, session_ref: int, now: int
) -> None:
    await conn.execute(
        "INSERT INTO tokens (hash, session_ref, created_at) VALUES (?, ?, ?)",
        (token_hash, session_ref, now),
    )


async def replace_token(
    conn: Connection, token_hash: bytes, session_ref: int, now: int
) -> None:
    """Give a session this token in place of any it had: one token per session."""
    cursor = await conn.execute(
        "UPDATE tokens SET hash = ?, created_at = ? WHERE session_ref = ?",
        (token_hash, now, session_ref),
    )
    if cursor.rowcount == 0:
        await insert_token(conn, token_hash, session_ref, now)


async def renew_token_for_cert(
    db: Database,
    token_hash: bytes,
    *,
    fid: str,
    session_id: str,
    issuer_domain: str,
    serial: int,
    now: int,
) -> int | None:
    """Replace the token of the live session whose current cert is this one.

    One atomic statement. Returns the session's row id, or None when there is no
    such session with a token (the caller then takes the general path).
    """
    rows = await db.execute_write(
        "UPDATE tokens SET hash = ?, created_at = ? WHERE session_ref = ("
        "  SELECT s.id FROM sessions s JOIN id_certs c ON c.id = s.current_cert_id"
        "  WHERE s.fid = ? AND s.session_id = ? AND s.ended_at IS NULL"
        "  AND c.issuer_domain = ? AND c.serial = ?) RETURNING session_ref",
        (token_hash, now, fid, session_id, issuer_domain, str(serial)),
    )
    return int(rows[0][0]) if len(rows) == 1 else None


async def get_live_session_with_cert(
    conn: Connection, fid: str, session_id: str
) -> tuple[Session, StoredCert | None] | None:
    """A live session and its current ID-Cert, in one query."""
    async with conn.execute(
        f"SELECT {_SESSION_AND_CERT_COLUMNS} FROM sessions s "
        "LEFT JOIN id_certs c ON c.id = s.current_cert_id "
        "WHERE s.fid = ? AND s.session_id = ? AND s.ended_at IS NULL",
        (fid, session_id),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    cert = StoredCert.from_row(row[10:]) if row[10] is not None else None
    return Session.from_row(row[:10]), cert


async def delete_tokens(conn: Connection, session_ref: int) -> None:
    await conn.execute("DELETE FROM tokens WHERE session_ref = ?", (session_ref,))


async def session_for_token(
    conn: Connection, token_hash: bytes
) -> tuple[Session, StoredCert] | None:
    """The live session a token hash belongs to, with its current ID-Cert."""
    async with conn.execute(
        f"SELECT {_SESSION_AND_CERT_COLUMNS} "
        "FROM tokens t JOIN sessions s ON s.id = t.session_ref "
        "JOIN id_certs c ON c.id = s.current_cert_id "
        "WHERE t.hash = ? AND s.ended_at IS NULL",
        (token_hash,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    return Session.from_row(row[:10]), StoredCert.from_row(row[10:])
