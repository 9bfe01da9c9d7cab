"""Adversarial tests of the gateway (PROTOCOL.md sections 8 and 9).

Hostile or odd clients: malformed envelopes, numbers in every odd shape, races
between Identify, Resume and live events, tokens dying mid-backlog, raw frames
that no well-behaved library sends, and a server shutting down under load.
Every wait is bounded; no assertion is about speed.

Where the contract is silent the test asserts what a careful server would do,
and says so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from websockets.asyncio.client import ClientConnection

from server.client import P2Client, SessionKey
from server.state import STATE
from tests.conftest import FakeClock
from tests.gateway.helpers import (
    RECV_TIMEOUT,
    expect_close,
    expect_hello,
    heartbeat,
    identify,
    low_keypackages_frame,
    open_gateway,
    receive,
    send,
    session_ref,
    settings,
    stalled_socket,
    store_events,
    store_low_keypackages,
)

NewSession = Callable[..., Awaitable[SessionKey]]
Frame = dict[str, Any]

HEARTBEAT_ACK_EMPTY: Final = {"n": "core", "op": 7, "d": []}


def low(i: int) -> dict[str, Any]:
    return {"remaining": i, "last_resort_used": False}


async def collect_until_close(ws: ClientConnection) -> tuple[list[Frame], int]:
    """Every frame until the server closes; the frames and the close code."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(RECV_TIMEOUT * 2):
            while True:
                frames.append(orjson.loads(await ws.recv()))
    except Exception as exc:  # ConnectionClosed
        rcvd = getattr(exc, "rcvd", None)
        assert rcvd is not None, f"no close frame: {exc!r}"
        return frames, rcvd.code
    raise AssertionError("unreachable")


async def collect_seqs(ws: ClientConnection, last: int) -> list[int]:
    """Event numbers received (also inside Resumed arrays) until ``last`` is seen."""
    seqs: list[int] = []
    async with asyncio.timeout(RECV_TIMEOUT * 2):
        while not seqs or seqs[-1] < last:
            frame = orjson.loads(await ws.recv())
            if frame["op"] == 10:
                seqs += [e["s"] for e in frame["d"]]
            elif "s" in frame:
                seqs.append(frame["s"])
    return seqs


# -- a raw WebSocket client, for frames no library sends


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: TestServer, *, stalled: bool = False) -> RawSocket:
        if stalled:
            reader, writer = await asyncio.open_connection(sock=stalled_socket(server))
        else:
            reader, writer = await asyncio.open_connection(server.host, server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /p2core/gateway HTTP/1.1\r\n"
                f"Host: {server.host}:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(RECV_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        header = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def read_frame(self) -> tuple[int, bytes]:
        async with asyncio.timeout(RECV_TIMEOUT):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def read_json(self) -> Frame:
        opcode, payload = await self.read_frame()
        assert opcode == 1, (opcode, payload)
        frame = orjson.loads(payload)
        assert isinstance(frame, dict)
        return frame

    async def expect_close(self, code: int) -> None:
        """Skip data frames until a close frame; it must carry ``code``."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 8:
                assert len(payload) >= 2, "close frame without a code"
                assert struct.unpack("!H", payload[:2])[0] == code, payload
                return

    def abort(self) -> None:
        self.writer.transport.abort()


async def hub_connections(server: TestServer) -> int:
    """Connections the hub still knows (authenticated ones and unauthenticated)."""
    hub = server.app[STATE].hub
    return hub.connection_count + len(hub._open)


async def wait_hub_empty(server: TestServer) -> None:
    async with asyncio.timeout(RECV_TIMEOUT):
        while await hub_connections(server):
            await asyncio.sleep(0.01)


# -- the envelope: op and n


@pytest.mark.parametrize(
    "op",
    [True, False, None, 2.0, 0.5, " 2", "2 ", "+2", "0x2", "2e0", "", [2], {"v": 2}],
    ids=repr,
)
async def test_op_of_wrong_type_closes_4002(server: TestServer, op: Any) -> None:
    # An op that is not an integer or a string of decimal digits is a frame of
    # the wrong shape (4002), not an unknown opcode.
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, {})
        await expect_close(ws, 4002)


@pytest.mark.parametrize("op", ["٢", "²", "２"], ids=["arabic", "superscript", "wide"])
async def test_op_with_unicode_digits_closes_4002(server: TestServer, op: str) -> None:
    # str.isdigit accepts these; only ASCII decimal digits are decimal strings.
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, {})
        await expect_close(ws, 4002)


@pytest.mark.parametrize("op", ["0", "00", "-0"])
async def test_op_zero_as_string_is_a_heartbeat(server: TestServer, op: str) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, {})
        assert await receive(ws) == HEARTBEAT_ACK_EMPTY


@pytest.mark.parametrize("op", [99, "99", 2**62, "1", 16])
async def test_op_unknown_integer_closes_4001(server: TestServer, op: Any) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, {})
        await expect_close(ws, 4001)


async def test_op_beyond_64_bits_closes_4002(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send('{"n":"core","op":' + "9" * 40 + ',"d":{}}')
        await expect_close(ws, 4002)


@pytest.mark.parametrize("n", ["Core", "", None, 1, "core "])
async def test_foreign_namespace_closes_4002(server: TestServer, n: Any) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(orjson.dumps({"n": n, "op": 0, "d": {}}).decode())
        await expect_close(ws, 4002)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, "null", "[]", '""'],
    ids=["deep-array", "deep-object", "null", "array", "string"],
)
async def test_deep_or_non_object_json_closes_4002(
    server: TestServer, text: str
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(text)
        await expect_close(ws, 4002)


async def test_deeply_nested_d_is_refused_or_ignored_without_crash(
    server: TestServer,
) -> None:
    # orjson refuses nesting deeper than 1024: bad JSON, 4002 (never 1011).
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send('{"n":"core","op":0,"d":' + "[" * 2000 + "]" * 2000 + "}")
        await expect_close(ws, 4002)


# -- d missing, null or wrong for each op


@pytest.mark.parametrize("op", [2, 5])
@pytest.mark.parametrize("d", [None, [], "x", 0, True], ids=repr)
async def test_auth_ops_with_bad_d_close_4002(
    server: TestServer, op: int, d: Any
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, d)
        await expect_close(ws, 4002)


@pytest.mark.parametrize("op", [2, 5])
async def test_auth_ops_with_d_missing_close_4002(server: TestServer, op: int) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(orjson.dumps({"n": "core", "op": op}).decode())
        await expect_close(ws, 4002)


@pytest.mark.parametrize("op", [4, 8])
@pytest.mark.parametrize("d", [None, [], {}], ids=repr)
async def test_post_auth_ops_with_bad_d_close_4002(
    server: TestServer, new_session: NewSession, op: int, d: Any
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, op, d)
        await expect_close(ws, 4002)


@pytest.mark.parametrize("op", [4, 8])
async def test_post_auth_ops_before_identify_close_4003_even_if_malformed(
    server: TestServer, op: int
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, None)
        await expect_close(ws, 4003)


@pytest.mark.parametrize("d", [[], "x", 0, True], ids=repr)
async def test_heartbeat_d_not_an_object_closes_4002(
    server: TestServer, d: Any
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 0, d)
        await expect_close(ws, 4002)


async def test_heartbeat_d_missing_is_acked(server: TestServer) -> None:
    # Missing d is read like {}: nothing to acknowledge (section 9).
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send('{"n":"core","op":0}')
        assert await receive(ws) == HEARTBEAT_ACK_EMPTY


# -- tokens


@pytest.mark.parametrize(
    "token",
    ["", "é" * 50, "\u0000" * 43, "🔑" * 20, "a" * 4096, " " * 43, "\u202e" * 43],
    ids=["empty", "latin", "nul", "emoji", "long", "spaces", "rtl"],
)
async def test_identify_odd_unicode_tokens_close_4004(
    server: TestServer, token: str
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": token})
        await expect_close(ws, 4004)


async def test_identify_token_over_length_limit_closes_4002(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": "a" * 5000})
        await expect_close(ws, 4002)


async def test_identify_lone_surrogate_token_is_refused(server: TestServer) -> None:
    # A lone surrogate is not UTF-8: bad JSON, 4002.
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send('{"n":"core","op":2,"d":{"token":"\\ud800"}}')
        await expect_close(ws, 4002)


async def test_identify_token_with_whitespace_around_closes_4004(
    server: TestServer, new_session: NewSession
) -> None:
    # A careful server compares tokens exactly.
    alice = await new_session()
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": f" {alice.token}\n"})
        await expect_close(ws, 4004)


async def test_identify_token_of_logged_out_session_closes_4004(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await client.logout(alice)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": alice.token})
        await expect_close(ws, 4004)


# -- heartbeats


@pytest.mark.parametrize(
    "d",
    [
        {"from": 0.0, "to": 0},
        {"from": 0, "to": 1.5},
        {"from": -1, "to": 0},
        {"from": "-1", "to": "0"},
        {"from": " 0", "to": "0"},
        {"from": "+0", "to": "0"},
        {"from": True, "to": 0},
        {"from": 0},
        {"to": 0},
        {"from": None, "to": None},
        {"from": 2, "to": 1},
        {"from": 0, "to": 0, "except": "0"},
        {"from": 0, "to": 0, "except": [0.0]},
        {"from": 0, "to": 0, "except": [None]},
        {"from": 0, "to": 0, "except": {"0": 0}},
    ],
    ids=repr,
)
async def test_heartbeat_malformed_numbers_close_4002(
    server: TestServer, new_session: NewSession, d: Any
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for i in range(3):
            assert await receive(ws) == low_keypackages_frame(i, i)
        await send(ws, 0, d)
        await expect_close(ws, 4002)


@pytest.mark.parametrize("excluded", [[5], [-1], [3]], ids=repr)
async def test_heartbeat_except_outside_range_closes_4002(
    server: TestServer, new_session: NewSession, excluded: list[int]
) -> None:
    # The contract is silent; an except entry outside from..to is a payload of
    # the wrong shape (4002). It acknowledges nothing meanwhile.
    alice = await new_session()
    await store_low_keypackages(server, alice, 4)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for _ in range(4):
            await receive(ws)
        await send(ws, 0, {"from": 0, "to": 2, "except": excluded})
        await expect_close(ws, 4002)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert [(await receive(ws))["s"] for _ in range(4)] == [0, 1, 2, 3]


async def test_heartbeat_except_duplicates_resend_each_event_once(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for _ in range(3):
            await receive(ws)
        resent = await heartbeat(ws, {"from": 0, "to": 2, "except": [1, 1, "1", 1]})
        assert resent == [low_keypackages_frame(1, 1)]
        assert await heartbeat(ws, {"from": 1, "to": 1}) == []
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert await heartbeat(ws, {}) == []


async def test_heartbeat_same_range_twice_is_harmless(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for _ in range(3):
            await receive(ws)
        assert await heartbeat(ws, {"from": 0, "to": 2}) == []
        assert await heartbeat(ws, {"from": 0, "to": 2}) == []
        # An except naming an event already acknowledged re-sends nothing.
        assert await heartbeat(ws, {"from": 0, "to": 2, "except": [1]}) == []
        await store_low_keypackages(server, alice, 1)
        assert await receive(ws) == low_keypackages_frame(0, 3)


async def test_heartbeat_except_resent_events_come_in_order(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 5)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for _ in range(5):
            await receive(ws)
        resent = await heartbeat(ws, {"from": 0, "to": 4, "except": [4, 0, 2]})
        assert [e["s"] for e in resent] == [0, 2, 4]


@pytest.mark.parametrize("d", [{"except": [7]}, {"except": "junk"}], ids=repr)
async def test_heartbeat_except_without_range_is_refused(
    server: TestServer, d: Any
) -> None:
    # Section 9 allows only {} for "nothing to acknowledge". An except list
    # without a range names numbers never sent (4007), or is simply of the
    # wrong shape (4002); silently acking it hides a client bug.
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 0, d)
        with pytest.raises(Exception) as info:
            async with asyncio.timeout(RECV_TIMEOUT):
                await ws.recv()
        rcvd = getattr(info.value, "rcvd", None)
        assert rcvd is not None and rcvd.code in (4002, 4007)


async def test_heartbeat_naming_event_of_other_connection_before_sent_closes_4007(
    server: TestServer, new_session: NewSession
) -> None:
    # A range beyond the session's last event closes 4007 even on a second
    # connection that never saw anything.
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, 0, {"from": 0, "to": 2})
        frames, code = await collect_until_close(ws)
        assert code == 4007
        assert [f["s"] for f in frames] in ([], [0], [0, 1])


# -- Resume


@pytest.mark.parametrize(
    ("s", "expected"),
    [(-1, [0, 1, 2]), ("-1", [0, 1, 2]), (0, [1, 2]), ("1", [2]), (2, [])],
    ids=repr,
)
async def test_resume_edge_sequence_numbers(
    server: TestServer, new_session: NewSession, s: Any, expected: list[int]
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": s, "token": alice.token})
        resumed = await receive(ws)
        assert resumed == {
            "n": "core",
            "op": 10,
            "d": [low_keypackages_frame(i, i) for i in expected],
        }
        await store_low_keypackages(server, alice, 1)
        assert await receive(ws) == low_keypackages_frame(0, 3)


async def test_resume_minus_one_on_fresh_session_is_empty(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": -1, "token": alice.token})
        assert await receive(ws) == {"n": "core", "op": 10, "d": []}


@pytest.mark.parametrize(
    "s", [-2, "-2", 1.0, "0.0", True, None, " 0", "+0", 2**64, "١"], ids=repr
)
async def test_resume_bad_s_closes_4002(
    server: TestServer, new_session: NewSession, s: Any
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        if s == 2**64:
            await ws.send(
                f'{{"n":"core","op":5,"d":{{"s":{s},"token":"{alice.token}"}}}}'
            )
        else:
            await send(ws, 5, {"s": s, "token": alice.token})
        await expect_close(ws, 4002)
    # Nothing was acknowledged by the refused Resume.
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert [(await receive(ws))["s"] for _ in range(2)] == [0, 1]


async def test_resume_bad_token_deletes_nothing(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 1, "token": alice.token[:-1]})
        await expect_close(ws, 4004)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert [(await receive(ws))["s"] for _ in range(2)] == [0, 1]


@pytest.mark.parametrize("first", [2, 5])
@pytest.mark.parametrize("second", [2, 5])
async def test_second_authentication_of_any_kind_closes_4005(
    server: TestServer, new_session: NewSession, first: int, second: int
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, first, {"s": -1, "token": alice.token})
        await receive(ws)  # Ready or Resumed
        await send(ws, second, {"s": -1, "token": alice.token})
        await expect_close(ws, 4005)


async def test_events_published_during_resume_are_all_sent_once_in_order(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    ref = await session_ref(server, alice)
    await store_events(server, ref, [low(i) for i in range(300)], batch=100)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        publisher = asyncio.create_task(
            store_events(server, ref, [low(i) for i in range(300)], batch=3)
        )
        await send(ws, 5, {"s": 49, "token": alice.token})
        seqs = await collect_seqs(ws, 599)
        await publisher
        assert seqs == list(range(50, 600))


async def test_identify_and_resume_racing_on_two_sockets(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    ref = await session_ref(server, alice)
    await store_events(server, ref, [low(i) for i in range(50)], batch=50)
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await expect_hello(ws1)
        await expect_hello(ws2)
        publisher = asyncio.create_task(
            store_events(server, ref, [low(i) for i in range(50)], batch=1)
        )
        await asyncio.gather(
            send(ws1, 2, {"token": alice.token}),
            send(ws2, 5, {"s": 24, "token": alice.token}),
        )
        ready = await receive(ws1)
        assert ready["op"] == 12
        seqs1, seqs2 = await asyncio.gather(
            collect_seqs(ws1, 99), collect_seqs(ws2, 99)
        )
        await publisher
        # The Resume socket gets exactly what follows its s.
        assert seqs2 == list(range(25, 100))
        # The Identify socket may miss what the Resume removed, nothing else,
        # and never gets an event twice or out of order.
        assert seqs1 == sorted(set(seqs1))
        assert set(range(25, 100)) <= set(seqs1)


async def test_many_connections_of_one_session_all_get_each_event(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    sockets = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(25):
            ws = await stack.enter_async_context(open_gateway(server))
            sockets.append(ws)
            await identify(ws, alice)
        await store_low_keypackages(server, alice, 2)
        for ws in sockets:
            assert await receive(ws) == low_keypackages_frame(0, 0)
            assert await receive(ws) == low_keypackages_frame(1, 1)
        # One socket acknowledges; the others' heartbeats stay valid.
        assert await heartbeat(sockets[0], {"from": 0, "to": 1}) == []
        assert await heartbeat(sockets[1], {"from": 0, "to": 1, "except": [1]}) == []


# -- client op 4


async def test_invalidation_of_other_actors_cert_closes_4002(
    server: TestServer, new_session: NewSession, clock: FakeClock
) -> None:
    alice = await new_session()
    bob = await new_session("bob", "b1")
    serial = x509.load_der_x509_certificate(bob.id_cert).serial_number
    signature = bob.key.sign(f"{clock.t}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(clock.t), "signature": signature}
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, 4, d)
        await expect_close(ws, 4002)
    # Bob's token still works: nothing was invalidated.
    async with open_gateway(server) as ws:
        await identify(ws, bob)


@pytest.mark.parametrize("serial", [0, -1, "0", 2**160, "9" * 60, True, 1.5], ids=repr)
async def test_invalidation_odd_serials_close_4002(
    server: TestServer, new_session: NewSession, clock: FakeClock, serial: Any
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        if isinstance(serial, int) and not isinstance(serial, bool) and serial > 2**63:
            body = f'{{"serial":{serial},"invalidSince":"{clock.t}","signature":"00"}}'
            await ws.send(f'{{"n":"core","op":4,"d":{body}}}')
        else:
            d = {"serial": serial, "invalidSince": str(clock.t), "signature": "00"}
            await send(ws, 4, d)
        await expect_close(ws, 4002)


async def test_invalidation_of_own_cert_closes_every_connection_of_session_4003(
    server: TestServer, new_session: NewSession, clock: FakeClock
) -> None:
    # "A token that dies while connected closes its connections with 4003."
    alice = await new_session()
    serial = x509.load_der_x509_certificate(alice.id_cert).serial_number
    signature = alice.key.sign(f"{clock.t}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(clock.t), "signature": signature}
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        await identify(ws2, alice)
        await send(ws1, 4, d)
        await expect_close(ws1, 4003)
        await expect_close(ws2, 4003)


# -- the token dies mid-backlog


@settings(gateway={"send_queue_max": 8})
@pytest.mark.parametrize("how", ["logout", "rotate"])
async def test_token_dying_mid_backlog_closes_4003(
    server: TestServer, client: P2Client, new_session: NewSession, how: str
) -> None:
    alice = await new_session()
    ref = await session_ref(server, alice)
    await store_events(server, ref, [low(i) for i in range(2000)], batch=500)
    old_token = alice.token
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert (await receive(ws))["s"] == 0
        if how == "logout":
            await client.logout(alice)
        else:
            await client.rotate(alice)
        frames, code = await collect_until_close(ws)
        assert code == 4003
        seqs = [f["s"] for f in frames]
        assert seqs == list(range(1, 1 + len(seqs)))
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": old_token})
        await expect_close(ws, 4004)


# -- raw frames


async def test_ping_is_answered_and_pong_ignored(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    raw = await RawSocket.open(server)
    try:
        assert (await raw.read_json())["op"] == 1
        raw.send_frame(0x9, b"are you there")
        assert await raw.read_frame() == (0xA, b"are you there")
        raw.send_frame(0xA, b"unsolicited")
        raw.send_frame(0x1, orjson.dumps({"op": 2, "d": {"token": alice.token}}))
        assert (await raw.read_json())["op"] == 12
    finally:
        raw.abort()


async def test_fragmented_text_frame_is_reassembled(server: TestServer) -> None:
    raw = await RawSocket.open(server)
    try:
        await raw.read_json()
        raw.send_frame(0x1, b'{"n":"core",', fin=False)
        raw.send_frame(0x9, b"ping between fragments")
        raw.send_frame(0x0, b'"op":0,', fin=False)
        raw.send_frame(0x0, b'"d":{}}')
        assert await raw.read_frame() == (0xA, b"ping between fragments")
        assert await raw.read_json() == HEARTBEAT_ACK_EMPTY
    finally:
        raw.abort()


async def test_continuation_without_start_closes_1002(server: TestServer) -> None:
    # RFC 6455 section 5.4: a protocol error; the contract is silent.
    raw = await RawSocket.open(server)
    try:
        await raw.read_json()
        raw.send_frame(0x0, b'{"n":"core","op":0,"d":{}}')
        await raw.expect_close(1002)
    finally:
        raw.abort()
    await wait_hub_empty(server)


async def test_invalid_utf8_text_frame_closes_1007(server: TestServer) -> None:
    # RFC 6455 section 8.1 requires 1007 for a text frame that is not UTF-8;
    # the contract's 4002 covers bad JSON inside a valid text frame.
    raw = await RawSocket.open(server)
    try:
        await raw.read_json()
        raw.send_frame(0x1, b'{"n":"core","op":0,"d":"\xff\xfe"}')
        await raw.expect_close(1007)
    finally:
        raw.abort()


async def test_unknown_ws_opcode_closes_1002(server: TestServer) -> None:
    raw = await RawSocket.open(server)
    try:
        await raw.read_json()
        raw.send_frame(0x3, b"reserved")
        await raw.expect_close(1002)
    finally:
        raw.abort()


@pytest.mark.parametrize("authenticated", [False, True])
async def test_abrupt_close_mid_frame_frees_connection(
    server: TestServer, new_session: NewSession, authenticated: bool
) -> None:
    alice = await new_session()
    raw = await RawSocket.open(server)
    await raw.read_json()
    if authenticated:
        raw.send_frame(0x1, orjson.dumps({"op": 2, "d": {"token": alice.token}}))
        assert (await raw.read_json())["op"] == 12
    # Header announcing 1000 bytes, then only 10 of them, then a reset.
    raw.writer.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 1000) + b"\0" * 14)
    await raw.writer.drain()
    raw.abort()
    await wait_hub_empty(server)
    # Events meanwhile stay in the outbox, and the server keeps serving.
    await store_low_keypackages(server, alice, 1)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert await receive(ws) == low_keypackages_frame(0, 0)


@settings(gateway={"max_frame_bytes": 1024})
async def test_oversized_fragmented_message_closes_4002(server: TestServer) -> None:
    # Small fragments adding up to more than max_frame_bytes are one oversized
    # message: 4002 like any oversized frame (under the 16x hard limit).
    raw = await RawSocket.open(server)
    try:
        await raw.read_json()
        raw.send_frame(0x1, b'{"n":"core","op":0,"d":{"pad":"', fin=False)
        for _ in range(6):
            raw.send_frame(0x0, b"x" * 300, fin=False)
        raw.send_frame(0x0, b'"}}')
        await raw.expect_close(4002)
    finally:
        raw.abort()


# -- shutdown


@settings(gateway={"send_queue_max": 8})
async def test_shutdown_closes_every_connection_1001_even_mid_backlog(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    bob = await new_session("bob", "b1")
    ref = await session_ref(server, alice)
    await store_events(server, ref, [low(i) for i in range(1500)], batch=500)
    async with (
        open_gateway(server) as busy,
        open_gateway(server) as idle,
        open_gateway(server) as anonymous,
    ):
        await identify(busy, alice)
        await identify(idle, bob)
        await expect_hello(anonymous)
        assert (await receive(busy))["s"] == 0
        closing = asyncio.create_task(server.close())
        results = await asyncio.gather(
            collect_until_close(busy),
            collect_until_close(idle),
            collect_until_close(anonymous),
        )
        async with asyncio.timeout(RECV_TIMEOUT):
            await closing
        assert [code for _, code in results] == [1001, 1001, 1001]
        seqs = [f["s"] for f in results[0][0]]
        assert seqs == list(range(1, 1 + len(seqs)))


@settings(gateway={"send_queue_max": 8})
async def test_shutdown_with_a_client_that_never_reads_still_completes(
    server: TestServer, new_session: NewSession
) -> None:
    # The contract asks for 1001; a peer that reads nothing cannot receive it,
    # but it must not hold the shutdown forever (the close is bounded).
    alice = await new_session()
    ref = await session_ref(server, alice)
    await store_events(server, ref, [low(i) for i in range(3000)], batch=1000)
    raw = await RawSocket.open(server, stalled=True)
    try:
        await raw.read_json()
        raw.send_frame(0x1, orjson.dumps({"op": 2, "d": {"token": alice.token}}))
        await raw.writer.drain()
        await asyncio.sleep(0.2)  # let the server fill the socket buffers
        async with asyncio.timeout(RECV_TIMEOUT):
            await server.close()
        assert await hub_connections(server) == 0
    finally:
        raw.abort()
