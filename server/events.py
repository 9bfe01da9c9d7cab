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
        sessions = await session_store.list_live_sessions(conn, fid)
        return await self.store(
            conn,
            [s.id for s in sessions if s.id != skip_session],
            EventOp.ACTOR_CERTIFICATE_INVALIDATION,
            {
                "serial": str(serial),
                "invalidSince": str(invalid_since),
                "signature": signature,
            },
        )

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Send committed events to whoever is connected; call after the commit."""
        self._hub.deliver(events)
