"""One gateway connection: the WebSocket, its send queue, heartbeats and delivery.

Events reach a connection only after they are committed to the outbox; the
connection numbers what it has queued so that an event arriving both from the
stored backlog and live is sent once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Final

from aiohttp import WSMsgType, web

from server import clock
from server.auth import Auth, resolve_token
from server.certs import load_id_cert
from server.ratelimit import RateLimiter
from server.state import STATE, ServerState
from server.trust import verify_invalidation_signature
from storage import certs as cert_store
from storage import outbox
from storage import sessions as session_store
from storage.outbox import OutboxEvent

from .errors import CloseCode, ProtocolViolation
from .messages import (
    ActorCertificateInvalidation,
    ClientMessage,
    Heartbeat,
    Identify,
    Op,
    Resume,
    ServiceChannel,
    decode_client_frame,
    encode_control,
    encode_event,
    encode_event_list,
)
from .protocol import GatewayProtocol

__all__ = ["GatewayConnection", "gateway_handler"]

logger = logging.getLogger(__name__)

_BACKLOG_PAGE: Final = 500
_CLOSE_TIMEOUT: Final = 2.0
# A flush right after a publish writes a frame itself only while that cannot
# wait for the socket: small frames, little unsent data (aiohttp pauses writing
# at 64 KiB). Everything else is left to the connection's writer task.
_DIRECT_FRAME_MAX: Final = 16 * 1024
_DIRECT_BUFFER_MAX: Final = 16 * 1024
# aiohttp itself refuses frames this many times over the limit (close 1009),
# before they are read into memory; smaller oversized frames get 4002 here.
_HARD_FRAME_FACTOR: Final = 16


async def gateway_handler(request: web.Request) -> web.StreamResponse:
    """``GET /p2core/gateway``: upgrade and serve one connection until it closes."""
    state = request.app[STATE]
    ws = web.WebSocketResponse(
        max_msg_size=state.config.gateway.max_frame_bytes * _HARD_FRAME_FACTOR,
        timeout=_CLOSE_TIMEOUT,
        autoping=True,
    )
    await ws.prepare(request)
    connection = GatewayConnection(
        state, ws, request.remote or "unknown", request.transport
    )
    await connection.run()
    return ws


class GatewayConnection:
    """Serves one WebSocket: reads frames, writes through a bounded queue."""

    def __init__(
        self,
        state: ServerState,
        ws: web.WebSocketResponse,
        peer: str,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        self._state = state
        self._ws = ws
        self._transport = transport
        self._config = state.config.gateway
        self._protocol = GatewayProtocol()
        # Frames waiting to be written, oldest first, at most send_queue_max.
        # The hub's flush writes them right after a publish; the writer task
        # takes over whenever a write might wait (a slow reader, a large frame).
        self._pending: deque[bytes] = deque()
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # Backlog delivery fills the queue only to half, leaving the rest to
        # control frames and live events; ``_room`` says it may add more.
        self._backlog_limit = max(1, self._config.send_queue_max // 2)
        self._room = asyncio.Event()
        self._limiter = RateLimiter(self._config.rate_per_minute)
        self._beat = asyncio.Event()
        self._opened = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth: Auth | None = None
        self._token = ""
        self._syncing = False
        self._held: list[OutboxEvent] = []
        self._last_queued = -1
        self._services: set[str] = set()
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self.log = logging.LoggerAdapter(logger, {"peer": peer})

    @property
    def queue_size(self) -> int:
        """How many frames wait to be written."""
        return len(self._pending)

    @property
    def write_buffer_size(self) -> int:
        """How many bytes the transport holds, written but not yet sent."""
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport):
            return transport.get_write_buffer_size()
        return 0

    async def wait_closed(self) -> None:
        """Wait until the connection has been served to its end."""
        await self._ended.wait()

    # -- lifecycle

    async def run(self) -> None:
        """Serve until the connection closes, whoever closes it."""
        self._state.hub.add(self)
        self._spawn(self._writer())
        self._send(Op.HELLO, {"heartbeat_interval": self._config.heartbeat_interval_ms})
        self._spawn(self._watchdog())
        try:
            await self._read_loop()
        except ProtocolViolation as exc:
            self.log.warning(
                "protocol violation code=%d reason=%s", exc.close_code, exc
            )
            await self.close(exc.close_code, exc.reason)
        except Exception:
            self.log.exception("connection failed")
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self._shutdown()

    async def _read_loop(self) -> None:
        while not self._closing:
            message = await self._ws.receive()
            if message.type is WSMsgType.TEXT:
                await self._on_text(message.data)
            elif message.type is WSMsgType.BINARY:
                raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "binary frame")
            else:
                self.log.debug("= socket ended type=%s", message.type)
                return

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``; undelivered events stay in the outbox."""
        if self._closing:
            return
        self._closing = True
        self._protocol.closed()
        # Frames not yet written are dropped: events among them stay in the outbox.
        # Emptying the queue also frees a backlog delivery waiting for a free slot.
        self._pending.clear()
        self._room.set()
        self.log.info("= connection closing code=%d reason=%s", code, reason)
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionError):
            if isinstance(self._transport, asyncio.WriteTransport):
                self._transport.abort()

    def request_close(self, code: int, reason: str) -> None:
        """Close from outside the read loop (watchdog, slow reader) without waiting."""
        if self._closer is None and not self._closing:
            self._closer = asyncio.create_task(self.close(code, reason))

    @property
    def _is_closing(self) -> bool:
        """A close has started or is about to: queue nothing more."""
        return self._closing or self._closer is not None

    async def _shutdown(self) -> None:
        self._state.hub.remove(self)
        if self._auth is not None:
            self._state.hub.detach(self._auth.session.id, self)
        for task in tuple(self._tasks):
            task.cancel()
        for task in tuple(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer
        elif not self._ws.closed:
            await self.close(CloseCode.GOING_AWAY, "connection ended")
        self._closing = True
        self._ended.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending

    def _send(self, op: Op, d: Any) -> None:
        self._enqueue(encode_control(op, d))

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame without waiting; a full queue closes the connection."""
        if self._is_closing:
            return
        if len(self._pending) >= self._config.send_queue_max:
            self.log.warning("send queue full, closing slow reader")
            self.request_close(CloseCode.POLICY_VIOLATION, "send queue full")
            return
        self._pending.append(frame)
        self._state.hub.schedule_flush(self)

    async def _put(self, frame: bytes) -> None:
        """Queue a backlog frame once the queue is less than half full."""
        while not self._is_closing and len(self._pending) >= self._backlog_limit:
            self._room.clear()
            self._wake.set()
            await self._room.wait()
        if not self._is_closing:
            self._pending.append(frame)
            self._state.hub.schedule_flush(self)

    async def flush(self) -> None:
        """Write what is queued now, as long as no write has to wait (by the hub)."""
        if self._send_lock.locked():
            self._wake.set()  # a write is under way; it will go on with these
            return
        await self._drain(direct=True)

    async def _writer(self) -> None:
        """Write what a flush left: frames that are large or meet a full socket."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain(direct=False)

    async def _drain(self, *, direct: bool) -> None:
        """Write queued frames in order; a direct drain stops before it could wait."""
        async with self._send_lock:
            try:
                while self._pending and not self._closing:
                    frame = self._pending[0]
                    if direct and (
                        len(frame) > _DIRECT_FRAME_MAX
                        or self.write_buffer_size > _DIRECT_BUFFER_MAX
                    ):
                        self._wake.set()
                        return
                    self._pending.popleft()
                    if len(self._pending) < self._backlog_limit:
                        self._room.set()
                    await self._ws.send_frame(frame, WSMsgType.TEXT)
            except (ConnectionError, RuntimeError) as exc:
                # The socket went away under us; nothing more can be written.
                self.log.info("= write failed error=%s", type(exc).__name__)
                self.request_close(CloseCode.GOING_AWAY, "write failed")

    def push_event(self, event: OutboxEvent) -> None:
        """A committed event for this session (called by the hub)."""
        if self._is_closing:
            return
        if self._syncing:
            self._held.append(event)
            if len(self._held) > self._config.send_queue_max:
                self.request_close(CloseCode.POLICY_VIOLATION, "send queue full")
            return
        self._queue_event(event)

    def _queue_event(self, event: OutboxEvent) -> None:
        if event.seq <= self._last_queued:
            return
        self._last_queued = event.seq
        self._protocol.sent(event.seq)
        self._enqueue(encode_event(event))

    # -- receiving

    async def _on_text(self, text: str) -> None:
        limit = self._config.max_frame_bytes
        # The limit is in bytes of UTF-8; a character takes at most four.
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "frame too large")
        if self._limiter.check("frames"):
            raise ProtocolViolation(CloseCode.RATE_LIMITED, "too many frames")
        op, d = decode_client_frame(text)
        message = self._protocol.receive(op, d)
        self.log.debug("< op=%d", op)
        await self._dispatch(message)

    async def _dispatch(self, message: ClientMessage) -> None:
        match message:
            case Heartbeat():
                await self._on_heartbeat(message)
            case Identify():
                await self._authenticate(message.token, resume_from=None)
            case Resume():
                await self._authenticate(message.token, resume_from=message.s)
            case ServiceChannel():
                self._on_service_channel(message)
            case ActorCertificateInvalidation():
                await self._on_invalidation(message)

    async def _on_heartbeat(self, message: Heartbeat) -> None:
        self._beat.set()
        resent: list[OutboxEvent] = []
        if self._auth is not None:
            if await resolve_token(self._state, self._token, clock.now()) is None:
                raise ProtocolViolation(
                    CloseCode.NOT_AUTHENTICATED, "token is no longer valid"
                )
            if message.first is not None and message.last is not None:
                ref = self._auth.session.id
                async with self._state.db.transaction() as conn:
                    await outbox.acknowledge(
                        conn, ref, message.first, message.last, message.excluded
                    )
                    resent = await outbox.get_events(conn, ref, message.excluded)
        self._enqueue(
            b'{"n":"core","op":%d,"d":%s}'
            % (Op.HEARTBEAT_ACK, encode_event_list(resent))
        )

    async def _authenticate(self, token: str, resume_from: int | None) -> None:
        """Identify (``resume_from`` None) or Resume; delivery runs as a task."""
        state = self._state
        auth = await resolve_token(state, token, clock.now())
        if auth is None:
            raise ProtocolViolation(CloseCode.AUTHENTICATION_FAILED, "invalid token")
        ref = auth.session.id
        if resume_from is not None:
            if resume_from >= auth.session.next_seq:
                raise ProtocolViolation(
                    CloseCode.INVALID_SEQUENCE, f"event {resume_from} was never sent"
                )
            if auth.session.dropped_through > resume_from:
                raise ProtocolViolation(
                    CloseCode.UNRESUMABLE, "events after that point were dropped"
                )
            async with state.db.transaction() as conn:
                await outbox.delete_through(conn, ref, resume_from)
        self._auth, self._token = auth, token
        self.log = logging.LoggerAdapter(
            logger,
            {"session_id": auth.session.session_id, "actor_id": auth.session.fid},
        )
        # Attach first: every event numbered after the read below reaches this
        # connection through the hub; those before it come from the outbox.
        self._syncing = True
        state.hub.attach(ref, self)
        session = await session_store.get_session(state.db.reader, ref)
        if session is None or session.ended_at is not None:
            raise ProtocolViolation(CloseCode.AUTHENTICATION_FAILED, "session ended")
        self._protocol.authenticated(session.next_seq - 1)
        self._opened.set()
        if resume_from is None:
            self._send(
                Op.READY,
                {
                    "fid": session.fid,
                    "session_id": session.session_id,
                    "heartbeat_interval": self._config.heartbeat_interval_ms,
                },
            )
        self.log.info("= session connected resumed=%s", resume_from is not None)
        # Frames keep being read meanwhile, so heartbeats are answered (and may
        # acknowledge events) during a long backlog.
        self._spawn(self._synchronize(ref, resume_from))

    async def _synchronize(self, ref: int, resume_from: int | None) -> None:
        """Send the stored backlog, then the events published meanwhile."""
        try:
            if resume_from is None:
                await self._deliver_backlog(ref)
            else:
                await self._deliver_resumed(ref, resume_from)
            while self._held and not self._is_closing:
                held = sorted(self._held, key=lambda e: e.seq)
                self._held.clear()
                for event in held:
                    if event.seq > self._last_queued:
                        self._last_queued = event.seq
                        self._protocol.sent(event.seq)
                        await self._put(encode_event(event))
        except Exception:
            self.log.exception("backlog delivery failed")
            self.request_close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._syncing = False
            self._held.clear()

    async def _deliver_backlog(self, ref: int) -> None:
        """After Ready: every stored event, oldest first, paced by the queue."""
        after = -1
        while not self._is_closing:
            page = await outbox.pending(
                self._state.db.reader, ref, after=after, limit=_BACKLOG_PAGE
            )
            for event in page:
                if event.seq > self._last_queued:
                    self._last_queued = event.seq
                    await self._put(encode_event(event))
            if len(page) < _BACKLOG_PAGE:
                return
            after = page[-1].seq

    async def _deliver_resumed(self, ref: int, resume_from: int) -> None:
        """Resumed: one frame with every stored event numbered above ``s``."""
        events = await outbox.pending(self._state.db.reader, ref, after=resume_from)
        self._last_queued = max([resume_from, *(e.seq for e in events)])
        await self._put(
            b'{"n":"core","op":%d,"d":%s}' % (Op.RESUMED, encode_event_list(events))
        )

    def _on_service_channel(self, message: ServiceChannel) -> None:
        service = message.service
        ack: dict[str, Any] = {"action": message.action, "service": service}
        if not service or len(service) > 64 or not service.isprintable():
            ack.update(success=False, error="invalid service name")
        elif message.action == "subscribe":
            self._services.add(service)
            ack["success"] = True
        else:
            ack["success"] = service in self._services
            if not ack["success"]:
                ack["error"] = "not subscribed"
            self._services.discard(service)
        self._send(Op.SERVICE_CHANNEL_ACK, ack)

    async def _on_invalidation(self, message: ActorCertificateInvalidation) -> None:
        assert self._auth is not None
        state = self._state
        session = self._auth.session
        domain = session.fid.partition("@")[2]
        cert = await cert_store.find_cert(state.db.reader, domain, message.serial)
        if cert is None or cert.fid != session.fid:
            raise ProtocolViolation(
                CloseCode.INVALID_PAYLOAD, "no such id-cert of this actor"
            )
        try:
            verify_invalidation_signature(
                load_id_cert(cert.der).public_key,
                message.serial,
                message.invalid_since,
                message.signature,
            )
        except ValueError as exc:
            raise ProtocolViolation(
                CloseCode.INVALID_PAYLOAD, "invalidation signature does not verify"
            ) from exc
        # The cert is invalid from now at the latest; the event relays the signed
        # claim unchanged so that other clients can verify its signature.
        since = min(message.invalid_since, clock.now())
        async with state.db.transaction() as conn:
            await cert_store.invalidate_cert(conn, cert.id, since)
            owner = await session_store.get_session(conn, cert.session_ref)
            events = await state.events.store_invalidation(
                conn,
                session.fid,
                skip_session=cert.session_ref,
                serial=message.serial,
                invalid_since=message.invalid_since,
                signature=message.signature,
            )
        state.events.publish(events)
        self.log.info("id-cert invalidated by client serial=%d", message.serial)
        if owner is None or owner.current_cert_id != cert.id:
            return  # an old cert: no token depends on it
        # Every connection of the session whose token died closes, this one too.
        state.hub.close_session(cert.session_ref, 4003, "id-cert invalidated")
        if cert.session_ref == session.id:
            raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "id-cert invalidated")

    # -- heartbeats

    async def _watchdog(self) -> None:
        """Close a connection that does not authenticate or stops heartbeating.

        A client has a little more than one interval to Identify or Resume (the
        spec sets no limit). Afterwards, a Heartbeat Request follows an interval
        without heartbeat, and 4009 follows 1.5 intervals without an answer.
        """
        interval = self._config.heartbeat_interval_ms / 1000
        if not await _wait(self._opened, interval * 1.1):
            self.request_close(CloseCode.NOT_AUTHENTICATED, "no identify in time")
            return
        while not self._is_closing:
            self._beat.clear()
            if await _wait(self._beat, interval * 1.1):
                continue
            self._send(Op.HEARTBEAT_REQUEST, {})
            if not await _wait(self._beat, interval * 1.5):
                self.request_close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat")
                return


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
