"""The one event pipeline: store in the outbox inside the caller's transaction,
then hand to live gateway connections once committed (PROTOCOL.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import orjson

from gateway.hub import Hub
from storage import outbox
from storage import sessions as session_store
from storage.db import Connection
from storage.outbox import OutboxEvent

from . import clock

__all__ = ["EventBus", "EventOp"]


class EventOp(IntEnum):
    """Opcodes of the server events that are stored and numbered."""

    NEW_SESSION = 3
    ACTOR_CERTIFICATE_INVALIDATION = 4
    SERVER_CERTIFICATE_CHANGE = 6
    CLIENT_KEY_CHANGE = 13
    LOW_KEYPACKAGES = 14


class EventBus:
    """Numbers, stores and publishes events for sessions."""

    def __init__(self, hub: Hub, *, max_events: int) -> None:
        self._hub = hub
        self._max_events = max_events
        self.stored = 0

    async def store(
        self, conn: Connection, session_refs: Sequence[int], op: EventOp, d: Any
    ) -> list[OutboxEvent]:
        """Write one event per session inside the caller's open transaction."""
        events = await outbox.append(
            conn,
            session_refs,
            int(op),
            orjson.dumps(d),
            now=clock.now(),
            max_events=self._max_events,
        )
        self.stored += len(events)
        return events

    async def store_for_actor(
        self,
        conn: Connection,
        fid: str,
        op: EventOp,
        d: Any,
        *,
        skip_session: int | None = None,
    ) -> list[OutboxEvent]:
        """One event for every live session of ``fid`` but ``skip_session``."""
        refs = await session_store.live_session_refs(conn, fid)
        return await self.store(conn, [r for r in refs if r != skip_session], op, d)

    async def store_for_everyone(
        self, conn: Connection, op: EventOp, d: Any
    ) -> list[OutboxEvent]:
        """One event for every live session this server knows, home and foreign."""
        return await self.store(
            conn, await session_store.live_session_refs(conn), op, d
        )

    async def store_invalidation(
        self,
        conn: Connection,
        fid: str,
        *,
        skip_session: int,
        serial: int,
        invalid_since: int,
        signature: str,
    ) -> list[OutboxEvent]:
        """Actor Certificate Invalidation for the actor's live sessions but one."""
        return await self.store_for_actor(
            conn,
            fid,
            EventOp.ACTOR_CERTIFICATE_INVALIDATION,
            {
                "serial": str(serial),
                "invalidSince": str(invalid_since),
                "signature": signature,
            },
            skip_session=skip_session,
        )

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Send committed events to whoever is connected; call after the commit."""
        self._hub.deliver(events)
