"""End-to-end tests of the gateway (PROTOCOL.md section 8) with a websockets client.

Every test runs a real server on 127.0.0.1 and talks to it with the ``websockets``
library, asserting whole frames, sequence numbers and close codes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from websockets.exceptions import ConnectionClosed

from server.client import P2Client, SessionKey
from server.config import Config
from server.events import EventOp
from tests.conftest import DOMAIN, PASSWORD, FakeClock
from tests.gateway.helpers import (
    DEFAULT_INTERVAL,
    RECV_TIMEOUT,
    NewSession,
    connections_of,
    event_frame,
    expect_close,
    expect_hello,
    heartbeat,
    identify,
    low_keypackages_frame,
    new_session_frame,
    open_gateway,
    pem,
    ready_frame,
    receive,
    send,
    session_ref,
    settings,
    stalled_socket,
    store_events,
    store_low_keypackages,
)
from tests.mls_helpers import make_keypackage

# -- connecting and authenticating


@settings(gateway={"heartbeat_interval_ms": 30000})
async def test_gateway_connect_sends_hello(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws, 30000)


async def test_identify_valid_token_sends_ready(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": alice.token})
        assert await receive(ws) == {
            "n": "core",
            "op": 12,
            "d": {
                "fid": f"alice@{DOMAIN}",
                "session_id": "s1",
                "heartbeat_interval": DEFAULT_INTERVAL,
            },
        }
        assert await heartbeat(ws, {}) == []


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "", "A" * 43, "x" * 600],
    ids=["garbage", "empty", "unknown", "too-long"],
)
async def test_identify_bad_token_closes_4004(server: TestServer, token: str) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": token})
        await expect_close(ws, 4004)


async def test_identify_replaced_token_closes_4004(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    old_token = alice.token
    await client.rotate(alice)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": old_token})
        await expect_close(ws, 4004)
    async with open_gateway(server) as ws:
        await identify(ws, alice)


async def test_identify_expired_cert_closes_4004(
    server: TestServer, new_session: NewSession, clock: FakeClock
) -> None:
    alice = await new_session()
    clock.advance(31 * 86400)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": alice.token})
        await expect_close(ws, 4004)


@pytest.mark.parametrize("op", [2, 5], ids=["identify", "resume"])
async def test_identify_second_authentication_closes_4005(
    server: TestServer, new_session: NewSession, op: int
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, op, {"token": alice.token, "s": 0})
        await expect_close(ws, 4005)


@pytest.mark.parametrize(
    ("op", "d"),
    [
        (8, {"action": "subscribe", "service": "chat"}),
        (4, {"serial": "1", "invalidSince": "1", "signature": "00"}),
    ],
)
async def test_frame_before_identify_closes_4003(
    server: TestServer, op: int, d: Any
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, op, d)
        await expect_close(ws, 4003)


@settings(gateway={"heartbeat_interval_ms": 1000})
async def test_identify_missing_closes_4003(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws, 1000)
        await expect_close(ws, 4003)


async def test_heartbeat_before_identify_is_acked(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        assert await heartbeat(ws, {}) == []
        assert await heartbeat(ws, None) == []


# -- malformed and unknown frames


@pytest.mark.parametrize("op", [99, 1, 3, 6, 7, 9, 10, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("authenticated", [False, True])
async def test_frame_unknown_opcode_closes_4001(
    server: TestServer, new_session: NewSession, op: int, authenticated: bool
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        if authenticated:
            await identify(ws, alice)
        else:
            await expect_hello(ws)
        await send(ws, op, {})
        await expect_close(ws, 4001)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"op": 0, "d": {}',
        "[]",
        '"text"',
        "0",
        "null",
        "{}",
        '{"d": {}}',
        '{"op": null}',
        '{"op": "zero"}',
        '{"op": "0x1"}',
        '{"op": " 2"}',
        '{"op": 2.0}',
        '{"op": true}',
        '{"op": -1}',
        '{"op": 18446744073709551616}',
        '{"n": "other", "op": 0}',
        '{"op": 2, "d": "token"}',
        '{"op": 2, "d": {}}',
        '{"op": 2, "d": {"token": 5}}',
        '{"op": 0, "d": []}',
        '{"op": 0, "d": {"from": 0}}',
        '{"op": 0, "d": {"to": 0}}',
        '{"op": 0, "d": {"from": "a", "to": "b"}}',
        '{"op": 0, "d": {"from": 1, "to": 0}}',
        '{"op": 0, "d": {"from": -1, "to": 0}}',
        '{"op": 0, "d": {"from": 0, "to": 0, "except": 0}}',
        '{"op": 0, "d": {"from": 0, "to": 0, "except": [1]}}',
    ],
)
async def test_frame_invalid_payload_closes_4002(server: TestServer, text: str) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(text)
        await expect_close(ws, 4002)


async def test_frame_binary_closes_4002(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(b'{"n": "core", "op": 0, "d": {}}')
        await expect_close(ws, 4002)


@settings(gateway={"max_frame_bytes": 1024})
@pytest.mark.parametrize(
    "filler",
    ["x" * 1000, "\u00e9" * 600, "\u20ac" * 400],
    ids=["ascii", "two-byte", "three-byte"],
)
async def test_frame_oversized_closes_4002(server: TestServer, filler: str) -> None:
    frame = orjson.dumps({"n": "core", "op": 0, "d": {"pad": filler}}).decode()
    assert len(frame.encode()) > 1024
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(frame)
        await expect_close(ws, 4002)


@settings(gateway={"max_frame_bytes": 1024})
async def test_frame_far_oversized_closes_1009(server: TestServer) -> None:
    # aiohttp refuses frames over 16 times the limit before reading them into
    # memory, with its own close code; a known departure from 4002.
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 0, {"pad": "x" * 16 * 1024})
        await expect_close(ws, 1009)


@settings(gateway={"max_frame_bytes": 1024})
async def test_frame_at_size_limit_is_accepted(server: TestServer) -> None:
    prefix = '{"n":"core","op":0,"d":{"pad":"'
    frame = prefix + "x" * (1024 - len(prefix) - 3) + '"}}'
    assert len(frame.encode()) == 1024
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(frame)
        assert await receive(ws) == {"n": "core", "op": 7, "d": []}


async def test_frame_numbers_as_strings_are_accepted(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await ws.send(orjson.dumps({"op": "2", "d": {"token": alice.token}}).decode())
        assert await receive(ws) == ready_frame(alice)
        assert await receive(ws) == low_keypackages_frame(0, 0)
        assert await receive(ws) == low_keypackages_frame(1, 1)
        assert await heartbeat(ws, {"from": "0", "to": "1", "except": ["1"]}) == [
            low_keypackages_frame(1, 1)
        ]
        await send(ws, "0", {"from": "1", "to": 1})
        assert await receive(ws) == {"n": "core", "op": 7, "d": []}
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, "5", {"s": "1", "token": alice.token})
        assert await receive(ws) == {"n": "core", "op": 10, "d": []}


@pytest.mark.parametrize(
    ("stored", "d"),
    [
        (0, {"from": 0, "to": 0}),
        (2, {"from": 0, "to": 2}),
        (2, {"from": 5, "to": 9}),
        (2, {"from": "0", "to": "2"}),
    ],
)
async def test_heartbeat_unsent_number_closes_4007(
    server: TestServer, new_session: NewSession, stored: int, d: Any
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, stored)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for s in range(stored):
            assert await receive(ws) == low_keypackages_frame(s, s)
        await send(ws, 0, d)
        await expect_close(ws, 4007)


async def test_heartbeat_range_before_identify_closes_4007(
    server: TestServer,
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 0, {"from": 0, "to": 0})
        await expect_close(ws, 4007)


@settings(gateway={"rate_per_minute": 5})
async def test_frames_over_rate_limit_close_4008(server: TestServer) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        for _ in range(5):
            assert await heartbeat(ws, {}) == []
        await send(ws, 0, {})
        await expect_close(ws, 4008)


# -- heartbeats


@settings(gateway={"heartbeat_interval_ms": 1000})
async def test_heartbeat_missing_after_request_closes_4009(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice, 1000)
        assert await receive(ws) == {"n": "core", "op": 11, "d": {}}
        await expect_close(ws, 4009)


@settings(gateway={"heartbeat_interval_ms": 1000})
async def test_heartbeat_answering_request_keeps_connection(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice, 1000)
        assert await receive(ws) == {"n": "core", "op": 11, "d": {}}
        assert await heartbeat(ws, {}) == []
        assert await receive(ws) == {"n": "core", "op": 11, "d": {}}
        assert await heartbeat(ws, {}) == []


async def test_heartbeat_after_token_expiry_closes_4003(
    server: TestServer, new_session: NewSession, clock: FakeClock
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert await heartbeat(ws, {}) == []
        clock.advance(31 * 86400)
        await send(ws, 0, {})
        await expect_close(ws, 4003)


async def test_internal_failure_closes_1011(
    server: TestServer, new_session: NewSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 1)

    async def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("storage.outbox.acknowledge", broken)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert await receive(ws) == low_keypackages_frame(0, 0)
        await send(ws, 0, {"from": 0, "to": 0})
        assert await expect_close(ws, 1011) == "internal error"
    assert connections_of(server, await session_ref(server, alice)) == []


# -- service channel


async def test_service_channel_subscribe_unsubscribe_acked(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("subscribe", "chat", {"success": True}),
        ("subscribe", "chat", {"success": True}),
        ("unsubscribe", "chat", {"success": True}),
        ("unsubscribe", "chat", {"success": False, "error": "not subscribed"}),
        ("subscribe", "", {"success": False, "error": "invalid service name"}),
        ("subscribe", "x" * 65, {"success": False, "error": "invalid service name"}),
    ]
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for action, service, outcome in steps:
            await send(ws, 8, {"action": action, "service": service})
            assert await receive(ws) == {
                "n": "core",
                "op": 9,
                "d": {"action": action, "service": service, **outcome},
            }


@pytest.mark.parametrize(
    "d",
    [
        {"action": "join", "service": "chat"},
        {"action": "subscribe"},
        {"service": "chat"},
        {"action": "subscribe", "service": 5},
        ["subscribe", "chat"],
    ],
)
async def test_service_channel_wrong_shape_closes_4002(
    server: TestServer, new_session: NewSession, d: Any
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, 8, d)
        await expect_close(ws, 4002)


# -- resume


async def test_identify_with_compression_sends_ready(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server, compression="deflate") as ws:
        await identify(ws, alice)
        await store_low_keypackages(server, alice, 1)
        assert await receive(ws) == low_keypackages_frame(0, 0)


@pytest.mark.parametrize("token", ["not-a-token", ""])
async def test_resume_bad_token_closes_4004(server: TestServer, token: str) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 0, "token": token})
        await expect_close(ws, 4004)


@pytest.mark.parametrize(
    "d",
    [
        None,
        [],
        "token",
        {"s": 0},
        {"s": "zero", "token": "t"},
        {"s": -2, "token": "t"},
        {"s": 1.5, "token": "t"},
        {"s": False, "token": "t"},
        {"s": 0, "token": 0},
    ],
)
async def test_resume_wrong_shape_closes_4002(server: TestServer, d: Any) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, d)
        await expect_close(ws, 4002)


async def test_resume_sends_events_above_s_once(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 5)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 2, "token": alice.token})
        assert await receive(ws) == {
            "n": "core",
            "op": 10,
            "d": [low_keypackages_frame(3, 3), low_keypackages_frame(4, 4)],
        }
        await store_low_keypackages(server, alice, 1)
        assert await receive(ws) == low_keypackages_frame(0, 5)
        assert await heartbeat(ws, {"from": 3, "to": 5}) == []
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 5, "token": alice.token})
        assert await receive(ws) == {"n": "core", "op": 10, "d": []}
        assert await heartbeat(ws, {}) == []


async def test_resume_from_start_sends_every_event(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": -1, "token": alice.token})
        assert await receive(ws) == {
            "n": "core",
            "op": 10,
            "d": [low_keypackages_frame(0, 0), low_keypackages_frame(1, 1)],
        }


async def test_resume_removes_events_up_to_s(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 1, "token": alice.token})
        assert await receive(ws) == {
            "n": "core",
            "op": 10,
            "d": [low_keypackages_frame(2, 2)],
        }
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 200
    assert reply.data == [low_keypackages_frame(2, 2)]


async def test_resume_beyond_last_event_closes_4007(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 2, "token": alice.token})
        await expect_close(ws, 4007)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.data == [low_keypackages_frame(0, 0), low_keypackages_frame(1, 1)]


# -- events from the REST routes


async def test_new_session_event_reaches_connected_session(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        second = await new_session("alice", "s2")
        frame = await receive(ws)
        assert frame == new_session_frame(second, 0)
        assert frame["d"]["cert"].startswith("-----BEGIN CERTIFICATE-----\n")
        assert frame["d"]["cert"].endswith("-----END CERTIFICATE-----\n")
        await new_session("bob", "s1")
        assert await heartbeat(ws, {"from": 0, "to": 0}) == []


async def test_event_reaches_every_connection_of_the_session(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        await identify(ws2, alice)
        second = await new_session("alice", "s2")
        assert await receive(ws1) == new_session_frame(second, 0)
        assert await receive(ws2) == new_session_frame(second, 0)
        assert await heartbeat(ws1, {"from": 0, "to": 0}) == []
        assert await heartbeat(ws2, {"from": 0, "to": 0}) == []


async def test_key_rotation_notifies_others_and_closes_own_connection(
    server: TestServer,
    client: P2Client,
    new_session: NewSession,
    clock: FakeClock,
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        assert await receive(ws1) == new_session_frame(second, 0)
        await identify(ws2, second)
        clock.advance(10)
        await client.rotate(second)
        assert await receive(ws1) == event_frame(
            13,
            {
                "fid": f"alice@{DOMAIN}",
                "session_id": "s2",
                "cert": pem(second.id_cert),
                "oldInvalidSince": clock.t,
            },
            1,
        )
        await expect_close(ws2, 4003)
    async with open_gateway(server) as ws2:
        await identify(ws2, second)
        assert await heartbeat(ws2, {}) == []


async def test_logout_notifies_others_with_invalidation(
    server: TestServer,
    client: P2Client,
    new_session: NewSession,
    clock: FakeClock,
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    serial = x509.load_der_x509_certificate(second.id_cert).serial_number
    signature = second.key.sign(f"{clock.t}{serial}".encode()).hex()
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        assert await receive(ws1) == new_session_frame(second, 0)
        await identify(ws2, second)
        reply = await client.request(
            "DELETE",
            "/p2core/session",
            json={"invalidSince": str(clock.t), "signature": signature},
            token=second.token,
        )
        assert reply.status == 204
        assert await receive(ws1) == event_frame(
            4,
            {
                "serial": str(serial),
                "invalidSince": str(clock.t),
                "signature": signature,
            },
            1,
        )
        await expect_close(ws2, 4003)


@settings(auth={"admins": [f"alice@{DOMAIN}"]})
async def test_admin_server_key_rotation_notifies_every_session(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    bob = await new_session("bob", "b1")
    old_server_cert = await client.server_cert()
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        await identify(ws2, bob)
        reply = await client.request("PUT", "/p2core/key/server", token=alice.token)
        assert reply.status == 200
        new_pem = reply.data
        assert new_pem.startswith("-----BEGIN CERTIFICATE-----\n")
        new_cert = x509.load_pem_x509_certificate(new_pem.encode())
        old_cert = x509.load_der_x509_certificate(old_server_cert)
        switched_at = int(new_cert.not_valid_before_utc.timestamp())
        assert new_cert.serial_number != old_cert.serial_number
        expected = event_frame(6, {"cert": new_pem, "oldInvalidSince": switched_at}, 0)
        assert await receive(ws1) == expected
        assert await receive(ws2) == expected


async def test_keypackage_claim_sends_low_keypackages_event(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    bob = await new_session("bob", "b1")
    package = base64.b64encode(make_keypackage(alice.key)).decode()
    reply = await client.request(
        "POST", "/p2core/keypackage/@me", json=[package], token=alice.token
    )
    assert reply.status == 201
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        reply = await client.request("GET", "/p2core/keypackage/alice", token=bob.token)
        assert reply.data == [package]
        assert await receive(ws) == event_frame(
            14, {"remaining": 0, "last_resort_used": False}, 0
        )


async def test_non_admin_server_key_rotation_is_forbidden(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    before = await client.server_cert()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        reply = await client.request("PUT", "/p2core/key/server", token=alice.token)
        assert reply.status == 403
        assert reply.data["error"] == "P2CORE_NOT_ADMINISTRATOR"
        assert reply.data["errcode"] == 403
        assert await heartbeat(ws, {}) == []
    assert await client.server_cert() == before


@pytest.mark.parametrize("offset", [-5, 0, 100], ids=["past", "now", "future"])
async def test_client_invalidation_notifies_and_closes_invalidated_session(
    server: TestServer,
    client: P2Client,
    new_session: NewSession,
    clock: FakeClock,
    offset: int,
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    serial = x509.load_der_x509_certificate(second.id_cert).serial_number
    since = clock.t + offset
    signature = second.key.sign(f"{since}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(since), "signature": signature}
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        assert await receive(ws1) == new_session_frame(second, 0)
        await identify(ws2, second)
        await send(ws1, 4, d)
        # The signed claim is relayed as sent, so that clients can verify it.
        assert await receive(ws1) == event_frame(4, d, 1)
        await expect_close(ws2, 4003)
    async with open_gateway(server) as ws2:
        await expect_hello(ws2)
        await send(ws2, 2, {"token": second.token})
        await expect_close(ws2, 4004)
    listing = await client.request("GET", "/p2core/key/user/alice/invalidated")
    assert listing.data == [
        {"serial": str(serial), "invalidated_at": str(min(since, clock.t))}
    ]


async def test_client_invalidation_of_own_cert_closes_own_connection_4003(
    server: TestServer, new_session: NewSession, clock: FakeClock
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    serial = x509.load_der_x509_certificate(alice.id_cert).serial_number
    signature = alice.key.sign(f"{clock.t}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(clock.t), "signature": signature}
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        assert await receive(ws1) == new_session_frame(second, 0)
        await identify(ws2, second)
        await send(ws1, 4, d)
        await expect_close(ws1, 4003)
        assert await receive(ws2) == event_frame(4, d, 0)


async def test_client_invalidation_of_replaced_cert_keeps_connections(
    server: TestServer,
    client: P2Client,
    new_session: NewSession,
    clock: FakeClock,
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    old_key = second.key
    serial = x509.load_der_x509_certificate(second.id_cert).serial_number
    signature = old_key.sign(f"{clock.t}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(clock.t), "signature": signature}
    await client.rotate(second)
    async with open_gateway(server) as ws1, open_gateway(server) as ws2:
        await identify(ws1, alice)
        assert (await receive(ws1))["s"] == 0
        assert (await receive(ws1))["s"] == 1
        await identify(ws2, second)
        await send(ws1, 4, d)
        assert await receive(ws1) == event_frame(4, d, 2)
        assert await heartbeat(ws2, {}) == []
        assert await heartbeat(ws1, {"from": 0, "to": 2}) == []


@pytest.mark.parametrize("change", ["serial", "signature", "invalidSince"])
async def test_client_invalidation_bad_claim_closes_4002(
    server: TestServer, new_session: NewSession, clock: FakeClock, change: str
) -> None:
    alice = await new_session()
    serial = x509.load_der_x509_certificate(alice.id_cert).serial_number
    signature = alice.key.sign(f"{clock.t}{serial}".encode()).hex()
    d = {"serial": str(serial), "invalidSince": str(clock.t), "signature": signature}
    d[change] = {"serial": "12345", "signature": "00" * 64, "invalidSince": "7"}[change]
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        await send(ws, 4, d)
        await expect_close(ws, 4002)
    async with open_gateway(server) as ws:
        await identify(ws, alice)


# -- delivery guarantees


async def test_identify_delivers_missed_events_in_order(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    others = [await new_session("alice", f"s{i}") for i in (2, 3, 4)]
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for s, other in enumerate(others):
            assert await receive(ws) == new_session_frame(other, s)
        assert await heartbeat(ws, {}) == []


async def test_identify_interleaves_backlog_and_live_events_in_order(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 1200)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 2, {"token": alice.token})
        await store_low_keypackages(server, alice, 3)
        assert await receive(ws) == ready_frame(alice)
        for s in range(1200):
            assert await receive(ws) == low_keypackages_frame(s, s)
        for s in range(1200, 1203):
            assert await receive(ws) == low_keypackages_frame(s - 1200, s)
        assert await heartbeat(ws, {}) == []


async def test_identify_again_resends_unacknowledged_events(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 2)
    for _ in range(2):
        async with open_gateway(server) as ws:
            await identify(ws, alice)
            assert await receive(ws) == low_keypackages_frame(0, 0)
            assert await receive(ws) == low_keypackages_frame(1, 1)


async def test_heartbeat_range_acknowledges_events(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for s in range(3):
            assert await receive(ws) == low_keypackages_frame(s, s)
        assert await heartbeat(ws, {"from": 0, "to": 2}) == []
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert (reply.status, reply.data) == (409, "")
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        assert await heartbeat(ws, {}) == []


async def test_heartbeat_except_resends_events_in_ack(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 4)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for s in range(4):
            assert await receive(ws) == low_keypackages_frame(s, s)
        resent = await heartbeat(ws, {"from": 0, "to": 3, "except": [1, 3]})
        assert resent == [low_keypackages_frame(1, 1), low_keypackages_frame(3, 3)]
        assert await heartbeat(ws, {"from": 1, "to": 1}) == []
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert (reply.status, reply.data) == (200, [low_keypackages_frame(3, 3)])


async def test_server_restart_loses_no_events(
    server: TestServer,
    start_server: Callable[[Config], Awaitable[TestServer]],
    config: Config,
    client: P2Client,
    new_session: NewSession,
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        second = await new_session("alice", "s2")
        assert await receive(ws) == new_session_frame(second, 0)
        await server.close()
        await expect_close(ws, 1001)
    restarted = await start_server(config)
    async with P2Client(str(restarted.make_url(""))) as client2:
        third = await client2.trust(SessionKey("alice", DOMAIN, "s3"), PASSWORD)
        async with open_gateway(restarted) as ws:
            await identify(ws, alice)
            assert await receive(ws) == new_session_frame(second, 0)
            assert await receive(ws) == new_session_frame(third, 1)
            assert await heartbeat(ws, {"from": 0, "to": 1}) == []
            await store_low_keypackages(restarted, alice, 1)
            assert await receive(ws) == low_keypackages_frame(0, 2)


async def test_server_shutdown_closes_unauthenticated_connections_1001(
    server: TestServer,
) -> None:
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await server.close()
        await expect_close(ws, 1001)


@settings(gateway={"outbox_max_events": 3})
async def test_outbox_limit_resume_over_gap_closes_4010(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 5)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 0, "token": alice.token})
        await expect_close(ws, 4010)
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": 1, "token": alice.token})
        assert await receive(ws) == {
            "n": "core",
            "op": 10,
            "d": [low_keypackages_frame(s, s) for s in (2, 3, 4)],
        }


@settings(gateway={"outbox_max_events": 3})
async def test_outbox_limit_identify_delivers_newest_events(
    server: TestServer, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 5)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        for s in (2, 3, 4):
            assert await receive(ws) == low_keypackages_frame(s, s)
        assert await heartbeat(ws, {}) == []


# -- a slow reader


@settings(gateway={"send_queue_max": 16})
async def test_slow_reader_is_disconnected_and_loses_nothing(
    server: TestServer,
    client: P2Client,
    new_session: NewSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = await new_session()
    ref = await session_ref(server, alice)
    total, batch = 10_000, 10
    # Cert-sized payloads: 15 MB, far more than the socket buffers between the
    # server and a client that stops reading can hold.
    payloads = [{"cert": f"{i:06d}" + "c" * 1500} for i in range(total)]
    stalled = stalled_socket(server)
    async with open_gateway(server, sock=stalled, max_queue=1) as ws:
        await identify(ws, alice)
        (connection,) = connections_of(server, ref)
        most_queued = most_buffered = 0
        for start in range(0, total, batch):
            await store_events(
                server,
                ref,
                payloads[start : start + batch],
                EventOp.NEW_SESSION,
                batch=batch,
            )
            most_queued = max(most_queued, connection.queue_size)
            most_buffered = max(most_buffered, connection.write_buffer_size)
        async with asyncio.timeout(RECV_TIMEOUT):
            await connection.wait_closed()
        assert "send queue full, closing slow reader" in caplog.text
        assert most_queued <= 16
        assert most_buffered < 1024 * 1024
        assert connection.queue_size == 0
        assert connections_of(server, ref) == []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(RECV_TIMEOUT):
                while True:
                    await ws.recv()

    first = await client.request("GET", "/p2core/events", token=alice.token)
    assert first.status == 200
    assert first.headers["X-P2-More"] == "true"
    assert first.data == [event_frame(3, payloads[s], s) for s in range(1000)]
    # The rest comes after Identify. A heartbeat sent at once is answered while
    # the backlog is still going out, not after it.
    stalled = stalled_socket(server)
    async with open_gateway(server, sock=stalled, max_queue=1) as ws:
        await identify(ws, alice)
        await send(ws, 0, {})
        frames = [await receive(ws) for _ in range(total - 1000 + 1)]
        ack = {"n": "core", "op": 7, "d": []}
        assert frames.count(ack) == 1
        assert frames.index(ack) < len(frames) - 1
        frames.remove(ack)
        assert frames == [event_frame(3, payloads[s], s) for s in range(1000, total)]
        assert await heartbeat(ws, {"from": 1000, "to": total - 1}) == []
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert (reply.status, reply.data) == (409, "")


@settings(gateway={"send_queue_max": 8})
async def test_burst_larger_than_send_queue_closes_connection(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    ref = await session_ref(server, alice)
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        (connection,) = connections_of(server, ref)
        payloads = [{"remaining": i, "last_resort_used": False} for i in range(50)]
        await store_events(server, ref, payloads, batch=50)
        assert connection.queue_size <= 8
        async with asyncio.timeout(RECV_TIMEOUT):
            await connection.wait_closed()
        frames = []
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(RECV_TIMEOUT):
                while True:
                    frames.append(orjson.loads(await ws.recv()))
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        assert frames == [low_keypackages_frame(s, s) for s in range(len(frames))]
        assert len(frames) <= 8
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.data == [low_keypackages_frame(s, s) for s in range(50)]
