"""The SQLite database: connections, versioned migrations and the write discipline.

Writes go through :meth:`Database.transaction`: one writer connection, one asyncio
lock, ``BEGIN IMMEDIATE``. Concurrent requests therefore queue in the event loop
instead of meeting "database is locked". Reads use a second connection in WAL
mode, which sees only committed data and never waits for the writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Final

import aiosqlite

from .errors import DatabaseUnusable

__all__ = ["SCHEMA_VERSION", "Connection", "Database"]

logger = logging.getLogger(__name__)

Connection = aiosqlite.Connection


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, _) in enumerate(found, start=1):
        assert version == expected, f"migration {expected} is missing"
    return found


MIGRATIONS: Final = _migrations()
SCHEMA_VERSION: Final = len(MIGRATIONS)


class Database:
    """One SQLite file with a writer and a reader connection."""

    def __init__(self, path: Path, writer: Connection, reader: Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at ``path`` and migrate it.

        Raises:
            DatabaseUnusable: the file is not a usable SQLite database of ours.
        """
        writer = reader = None
        try:
            writer = await _connect(path)
            await _migrate(writer, path)
            reader = await _connect(path)
            await reader.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, OSError) as exc:
            for conn in (writer, reader):
                if conn is not None:
                    await conn.close()
            raise DatabaseUnusable(
                f"cannot open database {str(path)!r}: {exc}"
            ) from exc
        except DatabaseUnusable:
            if writer is not None:
                await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        """Wait for the running write, then close both connections."""
        async with self._write_lock:
            await self._writer.close()
            await self._reader.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Run a write transaction: committed on success, rolled back on any error."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.rollback()
                raise
            await self._writer.commit()

    async def execute_write(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Run one statement as its own transaction; return its rows (RETURNING).

        A single statement is atomic by itself: one round trip to the database
        thread instead of BEGIN, statement and COMMIT.
        """
        async with self._write_lock:
            return list(await self._writer.execute_fetchall(sql, tuple(params)))

    @property
    def reader(self) -> Connection:
        """The read-only connection, for queries outside a transaction."""
        return self._reader

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.fetchone("SELECT 1")


async def _connect(path: Path) -> Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _migrate(conn: Connection, path: Path) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise DatabaseUnusable(
            f"database {str(path)!r} has schema version {current}, newer than "
            f"this server's {SCHEMA_VERSION}"
        )
    for version, script in MIGRATIONS[current:]:
        logger.info("applying migration version=%d path=%s", version, path)
        try:
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                await conn.rollback()
            raise
