"""Actors registered on this server."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .db import Connection
from .errors import ActorExists

__all__ = ["Actor", "create_actor", "get_actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: int
    local_name: str
    password_hash: str
    created_at: int


async def create_actor(
    conn: Connection, local_name: str, password_hash: str, now: int
) -> Actor:
    """Insert a new actor.

    Raises:
        ActorExists: the local name is taken.
    """
    try:
        cursor = await conn.execute(
            "INSERT INTO actors (local_name, password_hash, created_at) "
            "VALUES (?, ?, ?)",
            (local_name, password_hash, now),
        )
    except sqlite3.IntegrityError as exc:
        raise ActorExists(local_name) from exc
    assert cursor.lastrowid is not None
    return Actor(cursor.lastrowid, local_name, password_hash, now)


async def get_actor(conn: Connection, local_name: str) -> Actor | None:
    async with conn.execute(
        "SELECT id, local_name, password_hash, created_at FROM actors "
        "WHERE local_name = ?",
        (local_name,),
    ) as cursor:
        row = await cursor.fetchone()
    return Actor(*row) if row else None
