"""Federation between two real server processes on 127.0.0.1 (PROTOCOL.md section 7).

Server A is alice's home server; server B authenticates her by challenge, fetching
A's server ID-Cert and invalidation list over real HTTP.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from server.certs import load_id_cert
from server.client import P2Client, SessionKey, identify_body
from server.demo import PASSWORD, ServerProcess, run_demo, two_servers


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B, started and answering."""
    with two_servers(tmp_path) as (a, b):
        await a.wait_ready()
        await b.wait_ready()
        yield a, b


async def test_demo_steps_pass_between_two_processes(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    await run_demo(a, b)
    assert a.stop() == 0
    assert b.stop() == 0


async def test_foreign_session_follows_home_server_changes(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    async with P2Client(a.url) as home, P2Client(b.url) as foreign:
        await home.register("alice", PASSWORD)
        first = await home.trust(SessionKey("alice", a.domain, "s1"), PASSWORD)
        second = await home.trust(SessionKey("alice", a.domain, "s2"), PASSWORD)
        token_b = await foreign.identify(first)

        # A replaces its server key: certs it signed before stay verifiable on B.
        rotated = await home.request("PUT", "/p2core/key/server", token=first.token)
        assert rotated.status == 200
        assert rotated.data.startswith("-----BEGIN CERTIFICATE-----")
        assert (await foreign.identify(second)) != ""

        # Key rotation on A, then the new cert is handed to B for the same session.
        await home.rotate(first)
        extern = await foreign.request(
            "POST",
            "/p2core/session/idcert/extern",
            json=base64.b64encode(first.id_cert).decode(),
            token=token_b,
        )
        assert extern.status == 201
        still = await foreign.request("GET", "/p2core/events", token=token_b)
        assert still.status == 409

        # A logs out the second session; B learns of the invalidation from A.
        old_second_cert = second.id_cert
        await home.logout(second)
        replay = SessionKey("alice", a.domain, "s2", key=second.key)
        replay.id_cert = old_second_cert
        refused = await foreign.request(
            "POST",
            "/p2core/session/identify",
            json=identify_body(replay.key, await foreign.challenge(), replay.id_cert),
        )
        assert refused.status == 400
        assert refused.data["error"] == "P2CORE_INVALID_CERTIFICATE"

        # With A down, B cannot check a new cert of A's: 502.
        third = await home.trust(SessionKey("alice", a.domain, "s3"), PASSWORD)
        assert a.stop() == 0
        down = await foreign.request(
            "POST",
            "/p2core/session/identify",
            json=identify_body(third.key, await foreign.challenge(), third.id_cert),
        )
        assert down.status == 502
        assert down.data["error"] == "P2CORE_HOME_SERVER_UNREACHABLE"
    assert load_id_cert(third.id_cert).subject is not None


async def test_extern_refuses_cert_of_other_session(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    async with P2Client(a.url) as home, P2Client(b.url) as foreign:
        await home.register("alice", PASSWORD)
        first = await home.trust(SessionKey("alice", a.domain, "s1"), PASSWORD)
        other = await home.trust(SessionKey("alice", a.domain, "s2"), PASSWORD)
        token_b = await foreign.identify(first)
        reply = await foreign.request(
            "POST",
            "/p2core/session/idcert/extern",
            body=orjson.dumps(base64.b64encode(other.id_cert).decode()),
            token=token_b,
        )
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"
