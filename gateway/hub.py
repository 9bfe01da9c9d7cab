"""Which gateway connections are open for which session, and delivery to them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from storage.outbox import OutboxEvent

__all__ = ["Hub", "Listener"]

logger = logging.getLogger(__name__)


class Listener(Protocol):
    """One authenticated gateway connection, as the hub sees it."""

    def push_event(self, event: OutboxEvent) -> None: ...

    def request_close(self, code: int, reason: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Hub:
    """Routes committed outbox events to the live connections of their sessions."""

    def __init__(self) -> None:
        self._by_session: dict[int, set[Listener]] = {}

    def attach(self, session_ref: int, listener: Listener) -> None:
        self._by_session.setdefault(session_ref, set()).add(listener)

    def detach(self, session_ref: int, listener: Listener) -> None:
        listeners = self._by_session.get(session_ref)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_session[session_ref]

    @property
    def connection_count(self) -> int:
        return sum(len(v) for v in self._by_session.values())

    def deliver(self, events: Iterable[OutboxEvent]) -> None:
        """Hand committed events to the connections of their sessions."""
        for event in events:
            for listener in tuple(self._by_session.get(event.session_ref, ())):
                listener.push_event(event)

    def close_session(self, session_ref: int, code: int, reason: str) -> None:
        """Start closing every connection of a session (its token died)."""
        for listener in tuple(self._by_session.get(session_ref, ())):
            listener.request_close(code, reason)

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection and wait until they are closed."""
        listeners = [x for group in self._by_session.values() for x in group]
        await asyncio.gather(
            *(x.close(code, reason) for x in listeners), return_exceptions=True
        )
