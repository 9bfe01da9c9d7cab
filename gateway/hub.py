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

    async def flush(self) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Hub:
    """Routes committed outbox events to the live connections of their sessions."""

    def __init__(self) -> None:
        self._by_session: dict[int, set[Listener]] = {}
        self._open: set[Listener] = set()
        # Connections with frames to write, in the order they got them; one task
        # writes them all, instead of waking a writer task per connection.
        self._dirty: dict[Listener, None] = {}
        self._flusher: asyncio.Task[None] | None = None

    def schedule_flush(self, listener: Listener) -> None:
        """``listener`` queued a frame: write it soon, with the others."""
        self._dirty[listener] = None
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._dirty:
                batch = list(self._dirty)
                self._dirty.clear()
                for listener in batch:
                    try:
                        await listener.flush()
                    except Exception:
                        logger.exception("gateway flush failed")
                        listener.request_close(1011, "internal error")
        finally:
            self._flusher = None

    def add(self, listener: Listener) -> None:
        """A connection opened; it is closed on shutdown even if never attached."""
        self._open.add(listener)

    def remove(self, listener: Listener) -> None:
        """A connection ended."""
        self._open.discard(listener)

    def attach(self, session_ref: int, listener: Listener) -> None:
        """An authenticated connection; it receives the session's events."""
        self._by_session.setdefault(session_ref, set()).add(listener)

    def detach(self, session_ref: int, listener: Listener) -> None:
        """Stop delivering the session's events to a connection."""
        listeners = self._by_session.get(session_ref)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_session[session_ref]

    def listeners(self, session_ref: int) -> tuple[Listener, ...]:
        """The connections attached for one session."""
        return tuple(self._by_session.get(session_ref, ()))

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
        listeners = set(self._open)
        for group in self._by_session.values():
            listeners.update(group)
        await asyncio.gather(
            *(x.close(code, reason) for x in listeners), return_exceptions=True
        )
