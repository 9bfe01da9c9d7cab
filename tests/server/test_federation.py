"""The federation client against peers that misbehave (PROTOCOL.md section 7).

The peers are aiohttp servers on 127.0.0.1 standing in for remote home servers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.config import Config
from server.federation import (
    MAX_RESPONSE_BYTES,
    FederationClient,
    HomeServerUnreachable,
    is_public_address,
)
from server.issuing import build_server_cert, new_serial_number

NOW = 1_800_000_000


def root_cert(domain: str) -> str:
    der = build_server_cert(
        Ed25519PrivateKey.generate(),
        domain,
        serial_number=new_serial_number(),
        not_valid_before=NOW - 1000,
        not_valid_after=NOW + 1000,
    )
    return base64.b64encode(der).decode()


async def peer_with(
    aiohttp_server: Callable[..., Any], handler: Callable[..., Any]
) -> tuple[TestServer, list[str]]:
    seen: list[str] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", recording)
    return await aiohttp_server(app), seen


def client_for(server: TestServer, **federation: Any) -> FederationClient:
    peers = {"peer.example": str(server.make_url("")).rstrip("/")}
    config = Config().replace("federation", peers=peers, **federation)
    return FederationClient(config)


async def test_server_cert_fetched_for_time_and_cached(
    aiohttp_server: Callable[..., Any],
) -> None:
    cert = root_cert("peer.example")

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(cert)

    server, seen = await peer_with(aiohttp_server, handler)
    client = client_for(server, cache_ttl_s=300)
    try:
        first = await client.server_cert("peer.example", NOW)
        second = await client.server_cert("peer.example", NOW + 5)
    finally:
        await client.close()
    assert first.issuer_domain == "peer.example"
    assert second is first
    assert seen == [f"/p2core/key/server?timestamp={NOW}"]


async def test_server_cert_refetched_without_cache(
    aiohttp_server: Callable[..., Any],
) -> None:
    cert = root_cert("peer.example")

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(cert)

    server, seen = await peer_with(aiohttp_server, handler)
    client = client_for(server, cache_ttl_s=0)
    try:
        await client.server_cert("peer.example", NOW)
        await asyncio.sleep(0.01)
        await client.server_cert("peer.example", NOW)
    finally:
        await client.close()
    assert len(seen) == 2


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b'"' + b"A" * MAX_RESPONSE_BYTES + b'"')


async def _not_json(request: web.Request) -> web.Response:
    return web.Response(text="<html>hello</html>")


async def _error(request: web.Request) -> web.Response:
    return web.json_response({"error": "x"}, status=500)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response("x")


async def _other_domain(request: web.Request) -> web.Response:
    return web.json_response(root_cert("other.example"))


async def _not_a_cert(request: web.Request) -> web.Response:
    return web.json_response(base64.b64encode(b"\x30\x00").decode())


async def _redirect_away(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://127.0.0.2:9/p2core/key/server")


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (_big, "response too large"),
        (_not_json, "answer is not JSON"),
        (_error, "status 500"),
        (_slow, "TimeoutError"),
        (_other_domain, "server id-cert is for 'other.example'"),
        (_not_a_cert, "bad server id-cert"),
        (_redirect_away, "redirect to another host"),
    ],
)
async def test_server_cert_refuses_bad_answers(
    aiohttp_server: Callable[..., Any], handler: Callable[..., Any], reason: str
) -> None:
    server, _ = await peer_with(aiohttp_server, handler)
    client = client_for(server, timeout_s=0.5)
    try:
        with pytest.raises(HomeServerUnreachable, match=reason):
            await client.server_cert("peer.example", NOW)
    finally:
        await client.close()


async def test_redirect_on_same_host_is_followed(
    aiohttp_server: Callable[..., Any],
) -> None:
    cert = root_cert("peer.example")

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/p2core/key/server":
            raise web.HTTPFound("/moved")
        return web.json_response(cert)

    server, seen = await peer_with(aiohttp_server, handler)
    client = client_for(server)
    try:
        found = await client.server_cert("peer.example", NOW)
    finally:
        await client.close()
    assert found.issuer_domain == "peer.example"
    assert seen[-1] == "/moved"


async def test_unconfigured_domain_on_loopback_is_refused() -> None:
    client = FederationClient(Config())
    try:
        with pytest.raises(HomeServerUnreachable):
            await client.server_cert("localhost", NOW)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("not an address", False),
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public
