"""End-to-end tests of ``GET /p2core/events`` (PROTOCOL.md sections 6, 8 and 9)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestServer

from server.client import P2Client
from server.config import Config
from tests.gateway.helpers import (
    NewSession,
    expect_close,
    expect_hello,
    heartbeat,
    identify,
    low_keypackages_frame,
    new_session_frame,
    open_gateway,
    receive,
    send,
    settings,
    store_low_keypackages,
)


async def test_events_without_token_is_unauthorized(client: P2Client) -> None:
    for token in (None, "not-a-token"):
        reply = await client.request("GET", "/p2core/events", token=token)
        assert reply.status == 401
        assert reply.data["error"] == "P2CORE_UNAUTHORIZED"


async def test_events_none_waiting_returns_409_with_empty_body(
    client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 409
    assert reply.data == ""
    assert reply.headers.get("Content-Length") == "0"
    assert "X-P2-More" not in reply.headers
    assert "X-P2-Events-Dropped" not in reply.headers


async def test_events_returns_oldest_first_and_delivers_them(
    client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    third = await new_session("alice", "s3")
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.data == [new_session_frame(second, 0), new_session_frame(third, 1)]
    assert "X-P2-More" not in reply.headers
    again = await client.request("GET", "/p2core/events", token=alice.token)
    assert (again.status, again.data) == (409, "")
    for other, expected in ((second, [new_session_frame(third, 0)]), (third, None)):
        reply = await client.request("GET", "/p2core/events", token=other.token)
        if expected is None:
            assert reply.status == 409
        else:
            assert (reply.status, reply.data) == (200, expected)


async def test_events_over_1000_sets_more_header(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 1001)
    first = await client.request("GET", "/p2core/events", token=alice.token)
    assert first.status == 200
    assert first.headers["X-P2-More"] == "true"
    assert first.data == [low_keypackages_frame(s, s) for s in range(1000)]
    second = await client.request("GET", "/p2core/events", token=alice.token)
    assert second.status == 200
    assert "X-P2-More" not in second.headers
    assert second.data == [low_keypackages_frame(1000, 1000)]
    third = await client.request("GET", "/p2core/events", token=alice.token)
    assert (third.status, third.data) == (409, "")


async def test_events_exactly_1000_has_no_more_header(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 1000)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 200
    assert "X-P2-More" not in reply.headers
    assert len(reply.data) == 1000


@settings(gateway={"outbox_max_events": 3})
async def test_events_after_outbox_drop_report_dropped_count(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 5)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 200
    assert reply.headers["X-P2-Events-Dropped"] == "2"
    assert reply.data == [low_keypackages_frame(s, s) for s in (2, 3, 4)]
    await store_low_keypackages(server, alice, 1)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 200
    assert "X-P2-Events-Dropped" not in reply.headers
    assert reply.data == [low_keypackages_frame(0, 5)]


@settings(gateway={"outbox_max_events": 3})
async def test_events_after_outbox_drop_resume_over_gap_closes_4010(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 4)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.headers["X-P2-Events-Dropped"] == "1"
    assert reply.data == [low_keypackages_frame(s, s) for s in (1, 2, 3)]
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": -1, "token": alice.token})
        await expect_close(ws, 4010)


async def test_events_fetched_are_not_resumed(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    await store_low_keypackages(server, alice, 3)
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.data == [low_keypackages_frame(s, s) for s in range(3)]
    async with open_gateway(server) as ws:
        await expect_hello(ws)
        await send(ws, 5, {"s": -1, "token": alice.token})
        assert await receive(ws) == {"n": "core", "op": 10, "d": []}
        await store_low_keypackages(server, alice, 1)
        assert await receive(ws) == low_keypackages_frame(0, 3)


async def test_events_fetched_while_connected_are_not_resent(
    server: TestServer, client: P2Client, new_session: NewSession
) -> None:
    alice = await new_session()
    async with open_gateway(server) as ws:
        await identify(ws, alice)
        second = await new_session("alice", "s2")
        assert await receive(ws) == new_session_frame(second, 0)
        reply = await client.request("GET", "/p2core/events", token=alice.token)
        assert reply.data == [new_session_frame(second, 0)]
        assert await heartbeat(ws, {"from": 0, "to": 0}) == []
        assert await heartbeat(ws, {}) == []
    reply = await client.request("GET", "/p2core/events", token=alice.token)
    assert reply.status == 409


async def test_events_survive_server_restart(
    server: TestServer,
    start_server: Callable[[Config], Awaitable[TestServer]],
    config: Config,
    new_session: NewSession,
) -> None:
    alice = await new_session()
    second = await new_session("alice", "s2")
    await server.close()
    restarted = await start_server(config)
    async with P2Client(str(restarted.make_url(""))) as client:
        reply = await client.request("GET", "/p2core/events", token=alice.token)
        assert (reply.status, reply.data) == (200, [new_session_frame(second, 0)])
