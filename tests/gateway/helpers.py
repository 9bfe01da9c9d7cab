"""Helpers shared by the gateway tests: a websockets client and event fixtures.

Every wait is bounded by ``RECV_TIMEOUT``, a safety net against a hung test,
never an assertion about speed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.session import GatewayConnection
from server.client import SessionKey
from server.events import EventOp
from server.state import STATE
from storage import sessions as session_store

NewSession = Callable[..., Awaitable[SessionKey]]
Frame = dict[str, Any]

# A safety net against a hung test, never an assertion about speed.
RECV_TIMEOUT: Final = 10.0
DEFAULT_INTERVAL: Final = 45000


def gateway_url(server: TestServer) -> str:
    return str(server.make_url("/p2core/gateway")).replace("http", "ws", 1)


@asynccontextmanager
async def open_gateway(
    server: TestServer, **options: Any
) -> AsyncIterator[ClientConnection]:
    """A websockets client connection; by default no proxy, compression or pings."""
    defaults: dict[str, Any] = {
        "proxy": None,
        "compression": None,
        "ping_interval": None,
        "max_size": None,
        "open_timeout": RECV_TIMEOUT,
        "close_timeout": RECV_TIMEOUT,
    }
    async with connect(gateway_url(server), **(defaults | options)) as ws:
        yield ws


async def receive(ws: ClientConnection) -> Frame:
    """The next frame, which must be a JSON text frame holding an object."""
    async with asyncio.timeout(RECV_TIMEOUT):
        raw = await ws.recv()
    assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
    frame = orjson.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def send(ws: ClientConnection, op: Any, d: Any = None) -> None:
    await ws.send(orjson.dumps({"n": "core", "op": op, "d": d}).decode())


async def expect_hello(ws: ClientConnection, interval: int = DEFAULT_INTERVAL) -> None:
    assert await receive(ws) == {
        "n": "core",
        "op": 1,
        "d": {"heartbeat_interval": interval},
    }


def ready_frame(session: SessionKey, interval: int = DEFAULT_INTERVAL) -> Frame:
    return {
        "n": "core",
        "op": 12,
        "d": {
            "fid": session.fid,
            "session_id": session.session_id,
            "heartbeat_interval": interval,
        },
    }


async def identify(
    ws: ClientConnection, session: SessionKey, interval: int = DEFAULT_INTERVAL
) -> None:
    """Hello, Identify, Ready: the connection is authenticated afterwards."""
    await expect_hello(ws, interval)
    await send(ws, 2, {"token": session.token})
    assert await receive(ws) == ready_frame(session, interval)


async def expect_close(ws: ClientConnection, code: int) -> str:
    """The next thing on the connection is a close frame with ``code``."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(RECV_TIMEOUT):
            frame = await ws.recv()
            pytest.fail(f"expected close {code}, got frame {frame!r}")
    received = info.value.rcvd
    assert received is not None, "the server sent no close frame"
    assert received.code == code, received.reason
    return received.reason


async def heartbeat(ws: ClientConnection, d: Any) -> list[Frame]:
    """Send a Heartbeat; return the events re-sent in the Heartbeat ACK."""
    await send(ws, 0, d)
    ack = await receive(ws)
    assert set(ack) == {"n", "op", "d"}
    assert (ack["n"], ack["op"]) == ("core", 7)
    assert isinstance(ack["d"], list)
    return ack["d"]


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def event_frame(op: int, d: Any, s: int) -> Frame:
    return {"n": "core", "op": op, "d": d, "s": s}


def new_session_frame(session: SessionKey, s: int) -> Frame:
    return event_frame(3, {"cert": pem(session.id_cert)}, s)


def low_keypackages_frame(remaining: int, s: int) -> Frame:
    return event_frame(14, {"remaining": remaining, "last_resort_used": False}, s)


async def session_ref(server: TestServer, session: SessionKey) -> int:
    """The database id of a live session."""
    state = server.app[STATE]
    found = await session_store.get_live_session(
        state.db.reader, session.fid, session.session_id
    )
    assert found is not None
    return found.id


async def store_events(
    server: TestServer,
    ref: int,
    payloads: Sequence[Any],
    op: EventOp = EventOp.LOW_KEYPACKAGES,
    *,
    batch: int = 1,
) -> None:
    """Store and publish events for one session through the server's EventBus."""
    state = server.app[STATE]
    for start in range(0, len(payloads), batch):
        async with state.db.transaction() as conn:
            events = []
            for d in payloads[start : start + batch]:
                events += await state.events.store(conn, [ref], op, d)
        state.events.publish(events)


async def store_low_keypackages(
    server: TestServer, session: SessionKey, count: int
) -> None:
    """``count`` Low KeyPackages events with ``remaining`` 0, 1, 2 ..."""
    payloads = [{"remaining": i, "last_resort_used": False} for i in range(count)]
    await store_events(server, await session_ref(server, session), payloads)


def stalled_socket(server: TestServer) -> socket.socket:
    """A connected socket with a tiny receive buffer, for a client that lags.

    Setting SO_RCVBUF turns off the kernel's buffer autotuning, so a client that
    stops reading soon makes the server's writes wait.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    return sock


def connections_of(server: TestServer, ref: int) -> list[GatewayConnection]:
    hub = server.app[STATE].hub
    found = [c for c in hub.listeners(ref) if isinstance(c, GatewayConnection)]
    return found


def settings(**sections: dict[str, Any]) -> pytest.MarkDecorator:
    """Parametrise the ``config`` fixture of one test."""
    return pytest.mark.parametrize("config", [sections], indirect=True, ids=[""])
