"""The foundation over HTTP: server ID-Cert, error format, operational routes."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.certs import load_server_cert
from server.client import P2Client
from server.config import Config
from tests.conftest import DOMAIN, FakeClock


def openssl_text(der: bytes) -> str:
    result = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-text"],
        input=der,
        capture_output=True,
        check=True,
    )
    return result.stdout.decode()


async def test_server_cert_is_ed25519_ca_for_openssl(client: P2Client) -> None:
    reply = await client.request("GET", "/p2core/key/server")
    assert reply.status == 200
    der = base64.b64decode(reply.data, validate=True)
    text = openssl_text(der)
    assert "Public Key Algorithm: ED25519" in text
    assert "CA:TRUE, pathlen:0" in text
    assert "Certificate Sign" in text
    assert "Subject: DC = com, DC = example" in text
    assert text.count("critical") == 2
    assert load_server_cert(der).issuer_domain == DOMAIN


async def test_server_cert_survives_restart(
    start_server: Callable[..., Any], config: Config
) -> None:
    first: TestServer = await start_server(config)
    async with P2Client(str(first.make_url(""))) as client:
        before = await client.server_cert()
    await first.close()
    second: TestServer = await start_server(config)
    async with P2Client(str(second.make_url(""))) as client:
        after = await client.server_cert()
    assert before == after
    key_file = config.data_path / "server_key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_server_cert_by_timestamp(client: P2Client, clock: FakeClock) -> None:
    current = await client.server_cert()
    assert await client.server_cert(timestamp=clock.t) == current
    reply = await client.request(
        "GET", "/p2core/key/server", params={"timestamp": "1000"}
    )
    assert reply.status == 404
    assert reply.data["error"] == "P2CORE_NOT_FOUND"
    bad = await client.request("GET", "/p2core/key/server", params={"timestamp": "x"})
    assert bad.status == 400
    assert bad.data["error"] == "P2CORE_BAD_REQUEST"


async def test_unknown_route_gets_json_404(client: P2Client) -> None:
    reply = await client.request("GET", "/p2core/nothing/here")
    assert reply.status == 404
    assert reply.data == {
        "errcode": 404,
        "error": "P2CORE_NOT_FOUND",
        "message": "There is no such route.",
    }


async def test_wrong_method_gets_json_405(client: P2Client) -> None:
    reply = await client.request("PATCH", "/p2core/challenge")
    assert reply.status == 405
    assert reply.data["error"] == "P2CORE_METHOD_NOT_ALLOWED"
    assert reply.data["errcode"] == 405


async def test_oversized_body_gets_json_413(
    start_server: Callable[..., Any], config: Config
) -> None:
    server: TestServer = await start_server(
        config.replace("limits", max_body_bytes=2048)
    )
    async with P2Client(str(server.make_url(""))) as client:
        reply = await client.request(
            "POST",
            "/p2core/identity",
            json={"username": "alice", "password": "x" * 5000},
        )
        assert reply.status == 413
        assert reply.data["error"] == "P2CORE_PAYLOAD_TOO_LARGE"
        assert (await client.request("GET", "/healthz")).status == 200


async def test_unexpected_exception_gets_500_without_trace(
    client: P2Client, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("storage.actors.get_actor", broken)
    reply = await client.request("GET", "/p2core/key/user/alice")
    assert reply.status == 500
    assert reply.data == {
        "errcode": 500,
        "error": "P2CORE_INTERNAL",
        "message": "An internal error occurred.",
    }


async def test_rate_limit_answers_429_with_retry_after(
    start_server: Callable[..., Any], config: Config
) -> None:
    server: TestServer = await start_server(config.replace("limits", rate_per_minute=3))
    async with P2Client(str(server.make_url(""))) as client:
        statuses = [
            (await client.request("GET", "/p2core/challenge")).status for _ in range(4)
        ]
        reply = await client.request("GET", "/p2core/challenge")
    assert statuses == [200, 200, 200, 429]
    assert reply.data["error"] == "P2CORE_RATE_LIMITED"
    assert int(reply.headers["Retry-After"]) >= 1


async def test_registration_closed_answers_403(
    start_server: Callable[..., Any], config: Config
) -> None:
    server: TestServer = await start_server(
        config.replace("auth", registration="closed")
    )
    async with P2Client(str(server.make_url(""))) as client:
        reply = await client.request(
            "POST", "/p2core/identity", json={"username": "a", "password": "12345678"}
        )
    assert reply.status == 403
    assert reply.data["error"] == "P2CORE_REGISTRATION_CLOSED"


async def test_operational_routes_answer(client: P2Client) -> None:
    health = await client.request("GET", "/healthz")
    assert health.status == 200
    well_known = await client.request("GET", "/.well-known/polyproto-core")
    assert well_known.data == {"api": f"http://{DOMAIN}:8080/p2core/"}
    metrics = await client.request("GET", "/metrics")
    assert metrics.status == 200
    assert 'p2core_http_requests_total{route="/healthz",status="200"} 1' in metrics.data
    assert "p2core_gateway_connections 0" in metrics.data
    assert "# TYPE p2core_events_stored_total counter" in metrics.data
    assert "p2core_events_stored_total 0" in metrics.data
