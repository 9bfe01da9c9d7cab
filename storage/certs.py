"""ID-Certs of sessions and the server's own ID-Certs, with their history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .db import Connection

__all__ = [
    "CERT_COLUMNS",
    "ServerCert",
    "StoredCert",
    "current_server_cert",
    "find_cert",
    "get_cert",
    "insert_cert",
    "insert_server_cert",
    "invalidate_cert",
    "list_certs_at",
    "list_invalidated",
    "replace_server_cert",
    "server_cert_at",
]

CERT_COLUMNS = (
    "id, session_ref, fid, serial, issuer_domain, der, not_before, not_after, "
    "invalidated_at"
)


@dataclass(frozen=True, slots=True)
class StoredCert:
    id: int
    session_ref: int
    fid: str
    serial: int
    issuer_domain: str
    der: bytes
    not_before: int
    not_after: int
    invalidated_at: int | None

    @classmethod
    def from_row(cls, row: Any) -> StoredCert:
        return cls(row[0], row[1], row[2], int(row[3]), *row[4:])

    def is_valid_at(self, t: int) -> bool:
        """Within its validity and not invalidated at time ``t``."""
        if not self.not_before <= t <= self.not_after:
            return False
        return self.invalidated_at is None or t < self.invalidated_at


@dataclass(frozen=True, slots=True)
class ServerCert:
    id: int
    serial: int
    der: bytes
    not_before: int
    not_after: int
    replaced_at: int | None

    @classmethod
    def from_row(cls, row: Any) -> ServerCert:
        return cls(row[0], int(row[1]), *row[2:])


async def insert_cert(
    conn: Connection,
    *,
    session_ref: int,
    fid: str,
    serial: int,
    issuer_domain: str,
    der: bytes,
    not_before: int,
    not_after: int,
) -> StoredCert:
    """Store a session's ID-Cert.

    Raises:
        sqlite3.IntegrityError: the issuer already has a cert with this serial.
    """
    cursor = await conn.execute(
        "INSERT INTO id_certs (session_ref, fid, serial, issuer_domain, der, "
        "not_before, not_after) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session_ref, fid, str(serial), issuer_domain, der, not_before, not_after),
    )
    assert cursor.lastrowid is not None
    return StoredCert(
        cursor.lastrowid,
        session_ref,
        fid,
        serial,
        issuer_domain,
        der,
        not_before,
        not_after,
        None,
    )


async def get_cert(conn: Connection, cert_id: int) -> StoredCert | None:
    async with conn.execute(
        f"SELECT {CERT_COLUMNS} FROM id_certs WHERE id = ?", (cert_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return StoredCert.from_row(row) if row else None


async def invalidate_cert(conn: Connection, cert_id: int, now: int) -> None:
    """Mark a cert invalid from ``now`` on (no-op if it already is)."""
    await conn.execute(
        "UPDATE id_certs SET invalidated_at = ? "
        "WHERE id = ? AND invalidated_at IS NULL",
        (now, cert_id),
    )


async def list_certs_at(conn: Connection, fid: str, t: int) -> list[StoredCert]:
    """The actor's certs that were valid (and not yet invalidated) at time ``t``."""
    async with conn.execute(
        f"SELECT {CERT_COLUMNS} FROM id_certs "
        "WHERE fid = ? AND not_before <= ? AND not_after >= ? "
        "AND (invalidated_at IS NULL OR invalidated_at > ?) ORDER BY id",
        (fid, t, t, t),
    ) as cursor:
        rows = await cursor.fetchall()
    return [StoredCert.from_row(row) for row in rows]


async def list_invalidated(conn: Connection, fid: str) -> list[StoredCert]:
    async with conn.execute(
        f"SELECT {CERT_COLUMNS} FROM id_certs "
        "WHERE fid = ? AND invalidated_at IS NOT NULL ORDER BY id",
        (fid,),
    ) as cursor:
        rows = await cursor.fetchall()
    return [StoredCert.from_row(row) for row in rows]


_SERVER_COLUMNS = "id, serial, der, not_before, not_after, replaced_at"


async def insert_server_cert(
    conn: Connection, *, serial: int, der: bytes, not_before: int, not_after: int
) -> ServerCert:
    cursor = await conn.execute(
        "INSERT INTO server_certs (serial, der, not_before, not_after) "
        "VALUES (?, ?, ?, ?)",
        (str(serial), der, not_before, not_after),
    )
    assert cursor.lastrowid is not None
    return ServerCert(cursor.lastrowid, serial, der, not_before, not_after, None)


async def replace_server_cert(conn: Connection, cert_id: int, now: int) -> None:
    await conn.execute(
        "UPDATE server_certs SET replaced_at = ? WHERE id = ?", (now, cert_id)
    )


async def current_server_cert(conn: Connection) -> ServerCert | None:
    async with conn.execute(
        f"SELECT {_SERVER_COLUMNS} FROM server_certs WHERE replaced_at IS NULL "
        "ORDER BY id DESC LIMIT 1"
    ) as cursor:
        row = await cursor.fetchone()
    return ServerCert.from_row(row) if row else None


async def server_cert_at(conn: Connection, t: int) -> ServerCert | None:
    """The server cert that was in force at time ``t``, if any."""
    async with conn.execute(
        f"SELECT {_SERVER_COLUMNS} FROM server_certs "
        "WHERE not_before <= ? AND not_after >= ? "
        "AND (replaced_at IS NULL OR replaced_at > ?) ORDER BY id DESC LIMIT 1",
        (t, t, t),
    ) as cursor:
        row = await cursor.fetchone()
    return ServerCert.from_row(row) if row else None


async def find_cert(
    conn: Connection, issuer_domain: str, serial: int
) -> StoredCert | None:
    """The stored cert an issuer gave this serial number, if any."""
    async with conn.execute(
        f"SELECT {CERT_COLUMNS} FROM id_certs WHERE issuer_domain = ? AND serial = ?",
        (issuer_domain, str(serial)),
    ) as cursor:
        row = await cursor.fetchone()
    return StoredCert.from_row(row) if row else None
