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
# Writers that may share one commit before it is forced.
_MAX_GROUP: Final = 64
SCHEMA_VERSION: Final = len(MIGRATIONS)


class Database:
    """One SQLite file with a writer and a reader connection."""

    def __init__(self, path: Path, writer: Connection, reader: Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Group commit: the open transaction's commit, shared by its members.
        self._group: asyncio.Future[None] | None = None
        self._grouped = 0
        self._waiting = 0
        self._flush_task: asyncio.Task[None] | None = None

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
        """Wait for the running write, commit an open group, close both connections."""
        async with self._write_lock:
            if self._group is not None:
                await self._commit_group()
            await self._writer.close()
            await self._reader.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Run a write transaction: committed on success, rolled back on any error.

        Group commit: when other writers are already waiting, the transaction is
        left open for them and they run inside it, each in a savepoint of its
        own; the last one commits for all. Every writer returns only once its
        changes are committed, and one writer's failure undoes only its own.
        """
        await self._acquire()
        group, first = self._group, self._group is None
        failed = False
        try:
            if first:
                await self._writer.execute("BEGIN IMMEDIATE")
                group = self._group = asyncio.get_running_loop().create_future()
            else:
                await self._writer.execute("SAVEPOINT unit")
            try:
                yield self._writer
            except BaseException:
                failed = True
                await self._undo(first)
                raise
            if not first:
                await self._writer.execute("RELEASE unit")
        finally:
            try:
                if self._group is not None and (
                    self._waiting == 0 or self._grouped >= _MAX_GROUP
                ):
                    await self._commit_group()
                elif self._group is not None:
                    self._grouped += 1
            finally:
                self._write_lock.release()
        if not failed and group is not None:
            await asyncio.shield(group)

    async def _acquire(self) -> None:
        """Take the write lock, counted as waiting meanwhile (for group commit)."""
        self._waiting += 1
        try:
            await self._write_lock.acquire()
        except BaseException:
            self._waiting -= 1
            if self._waiting == 0 and not self._write_lock.locked():
                # The group was left open for this writer, which gave up.
                self._flush_task = asyncio.create_task(self._flush())
            raise
        self._waiting -= 1

    async def _undo(self, first: bool) -> None:
        if first:
            await self._writer.rollback()
            group, self._group, self._grouped = self._group, None, 0
            assert group is not None
            group.cancel()
        else:
            await self._writer.execute("ROLLBACK TO unit")
            await self._writer.execute("RELEASE unit")

    async def _commit_group(self) -> None:
        group, self._group, self._grouped = self._group, None, 0
        assert group is not None
        try:
            await self._writer.commit()
        except BaseException as exc:
            if self._writer.in_transaction:
                await self._writer.rollback()
            group.set_exception(exc)
            group.exception()  # retrieved here: members see it through await
            raise
        group.set_result(None)

    async def _flush(self) -> None:
        """Commit a group transaction that nobody is left to close."""
        async with self._write_lock:
            if self._group is not None:
                await self._commit_group()

    async def execute_write(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Run one statement atomically and return its rows (RETURNING).

        Outside a group this is one round trip to the database thread instead
        of BEGIN, statement and COMMIT; inside one it joins the group.
        """
        await self._acquire()
        if self._group is None:
            try:
                return list(await self._writer.execute_fetchall(sql, tuple(params)))
            finally:
                self._write_lock.release()
        self._write_lock.release()
        async with self.transaction() as conn:
            return list(await conn.execute_fetchall(sql, tuple(params)))

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
