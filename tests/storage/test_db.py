"""The database: migrations on fresh and existing files, refusal of unusable ones."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import actors, outbox
from storage.db import SCHEMA_VERSION, Database
from storage.errors import ActorExists, DatabaseUnusable

ROOT = Path(__file__).parents[2]
TABLES = {
    "actors",
    "server_certs",
    "sessions",
    "id_certs",
    "tokens",
    "keypackages",
    "outbox",
}


def schema_of(path: Path) -> tuple[int, set[str]]:
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    return version, names


async def test_open_fresh_database_applies_all_migrations(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    db = await Database.open(path)
    await db.close()
    version, names = schema_of(path)
    assert version == SCHEMA_VERSION
    assert names >= TABLES
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_open_existing_database_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    db = await Database.open(path)
    async with db.transaction() as conn:
        await actors.create_actor(conn, "alice", "hash", 1)
    await db.close()
    db = await Database.open(path)
    try:
        actor = await actors.get_actor(db.reader, "alice")
    finally:
        await db.close()
    assert actor is not None and actor.password_hash == "hash"
    assert schema_of(path)[0] == SCHEMA_VERSION


async def test_open_migrates_version_1_database_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    first = (ROOT / "storage" / "migrations" / "0001_initial.sql").read_text()
    with sqlite3.connect(path) as conn:
        conn.executescript(first + "\nPRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO actors (local_name, password_hash, created_at) "
            "VALUES ('old', 'h', 1)"
        )
    db = await Database.open(path)
    try:
        actor = await actors.get_actor(db.reader, "old")
    finally:
        await db.close()
    version, names = schema_of(path)
    assert actor is not None
    assert version == SCHEMA_VERSION >= 2
    assert "used_init_keys" in names


async def test_open_migrates_version_2_outbox_to_shared_payloads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p2core.sqlite3"
    with sqlite3.connect(path) as conn:
        for name in ("0001_initial.sql", "0002_used_init_keys.sql"):
            conn.executescript((ROOT / "storage" / "migrations" / name).read_text())
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO sessions (fid, session_id, is_foreign, created_at, next_seq) "
            "VALUES ('a@x', 's1', 0, 1, 2)"
        )
        conn.executemany(
            "INSERT INTO outbox (session_ref, seq, op, data, created_at) "
            "VALUES (1, ?, 3, ?, 1)",
            [(0, b'{"cert":"a"}'), (1, b'{"cert":"b"}')],
        )
    db = await Database.open(path)
    try:
        events = await outbox.pending(db.reader, 1)
        async with db.transaction() as conn:
            await outbox.delete_through(conn, 1, 0)
            orphans = await outbox.delete_orphan_payloads(conn)
        left = await outbox.pending(db.reader, 1)
    finally:
        await db.close()
    assert [(e.seq, e.op, e.data) for e in events] == [
        (0, 3, b'{"cert":"a"}'),
        (1, 3, b'{"cert":"b"}'),
    ]
    assert orphans == 1
    assert [e.seq for e in left] == [1]
    assert schema_of(path)[0] == SCHEMA_VERSION


async def test_open_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseUnusable, match="newer than"):
        await Database.open(path)


async def test_open_refuses_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "p2core.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(DatabaseUnusable, match="cannot open database"):
        await Database.open(path)


async def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "p2core.sqlite3")
    try:
        with pytest.raises(ActorExists):
            async with db.transaction() as conn:
                await actors.create_actor(conn, "bob", "h", 1)
                await actors.create_actor(conn, "bob", "h", 1)
        assert await actors.get_actor(db.reader, "bob") is None
    finally:
        await db.close()


async def test_concurrent_transactions_never_lock(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "p2core.sqlite3")

    async def register(i: int) -> None:
        async with db.transaction() as conn:
            await actors.create_actor(conn, f"actor{i}", "h", i)

    try:
        await asyncio.gather(*(register(i) for i in range(200)))
        row = await db.fetchone("SELECT count(*) FROM actors")
    finally:
        await db.close()
    assert row[0] == 200


async def test_failing_writer_undoes_only_its_own_changes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "p2core.sqlite3")

    async def register(name: str, fail: bool) -> None:
        async with db.transaction() as conn:
            await actors.create_actor(conn, name, "h", 1)
            if fail:
                raise RuntimeError("boom")

    try:
        results = await asyncio.gather(
            register("a", False),
            register("b", True),
            register("c", False),
            register("a", False),
            return_exceptions=True,
        )
        names = [
            row[0]
            for row in await db.reader.execute_fetchall(
                "SELECT local_name FROM actors ORDER BY local_name"
            )
        ]
    finally:
        await db.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[3], ActorExists)
    assert names == ["a", "c"]
