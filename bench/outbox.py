"""Outbox: events persisted per second, against raw aiosqlite batched inserts.

``python -m bench.outbox`` runs in one process pinned to the server CPU (the
aiosqlite worker threads inherit the pin), each case on a fresh database file
with 1,000 live sessions, for a fixed time. Every row carries the same 1 KiB
event payload (about a Client Key Change with its PEM ID-Cert).

- ``outbox_fanout_gN``: one event for N sessions per transaction, as the server
  stores a fan-out event (``storage.outbox.append`` in ``Database.transaction``).
- ``outbox_concurrent_cN``: N producers at once, each storing one event for its
  own session per transaction, as N concurrent requests do.

The baseline for both is the group-commit ceiling: ``executemany`` of N rows of
the same columns into a plain table, then one commit, with the server's pragmas
(WAL, synchronous NORMAL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from storage import outbox
from storage import sessions as session_store
from storage.db import Database

from .common import SERVER_CPU, Result, pin, report

__all__ = ["main"]

SESSIONS: Final = 1000
PAYLOAD: Final = b'{"cert":"' + b"A" * 1000 + b'","oldInvalidSince":1700000000}'
MAX_EVENTS: Final = 10000


async def _open_ours(path: Path) -> tuple[Database, list[int]]:
    db = await Database.open(path)
    now = int(time.time())
    async with db.transaction() as conn:
        refs = [
            (
                await session_store.create_session(
                    conn, f"a{i}@bench.example", "s", is_foreign=False, now=now
                )
            ).id
            for i in range(SESSIONS)
        ]
    return db, refs


async def ours_fanout(path: Path, group: int, seconds: float) -> float:
    """Rows per second: one event for ``group`` sessions per transaction."""
    db, refs = await _open_ours(path)
    try:
        rows = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            async with db.transaction() as conn:
                stored = await outbox.append(
                    conn,
                    refs[:group],
                    13,
                    PAYLOAD,
                    now=int(time.time()),
                    max_events=MAX_EVENTS,
                )
            rows += len(stored)
        return rows / (time.perf_counter() - started)
    finally:
        await db.close()


async def ours_concurrent(path: Path, producers: int, seconds: float) -> float:
    """Rows per second: ``producers`` tasks, one single-session event per txn."""
    db, refs = await _open_ours(path)
    rows = [0]
    deadline = time.perf_counter() + seconds

    async def producer(ref: int) -> None:
        while time.perf_counter() < deadline:
            async with db.transaction() as conn:
                stored = await outbox.append(
                    conn,
                    [ref],
                    13,
                    PAYLOAD,
                    now=int(time.time()),
                    max_events=MAX_EVENTS,
                )
            rows[0] += len(stored)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(producer(ref) for ref in refs[:producers]))
        return rows[0] / (time.perf_counter() - started)
    finally:
        await db.close()


async def raw_batched(path: Path, group: int, seconds: float) -> float:
    """Rows per second: ``executemany`` of ``group`` rows, then one commit."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute(
            "CREATE TABLE events (session_ref INTEGER, seq INTEGER, op INTEGER, "
            "data BLOB, created_at INTEGER)"
        )
        seq, rows = 0, 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            now = int(time.time())
            batch = [(ref, seq, 13, PAYLOAD, now) for ref in range(group)]
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", batch)
            await conn.commit()
            seq += 1
            rows += group
        return rows / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _run(levels: Sequence[int], seconds: float, root: Path) -> list[Result]:
    results = []
    for level in levels:
        baseline = await raw_batched(root / f"raw{level}.sqlite3", level, seconds)
        fanout = await ours_fanout(root / f"fan{level}.sqlite3", level, seconds)
        concurrent = await ours_concurrent(root / f"con{level}.sqlite3", level, seconds)
        results.append(
            Result(
                f"outbox_fanout_g{level}",
                fanout,
                baseline,
                note=f"rows/s, 1 event to {level} sessions per commit",
            )
        )
        results.append(
            Result(
                f"outbox_concurrent_c{level}",
                concurrent,
                baseline,
                note=f"rows/s, {level} producers, 1 row per commit each",
            )
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,10,100,1000")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--json", help="append results as JSON lines to this file")
    args = parser.parse_args(argv)
    pin(os.getpid(), SERVER_CPU)
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp:
        results = asyncio.run(_run(levels, args.seconds, Path(tmp)))
    report(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
