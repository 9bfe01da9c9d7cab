"""Challenge authentication on one server (PROTOCOL.md section 6, core spec 4.1.1).

Actors of this server identify against our own cert history; forged actors of other
domains get certs from roots this test makes, which no home server vouches for.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from server.client import P2Client, SessionKey, build_csr, identify_body
from server.demo import free_port
from server.issuing import new_serial_number
from tests.conftest import DOMAIN, FakeClock, make_config

DAY = 86400


def actor_name(session: SessionKey) -> x509.Name:
    csr = x509.load_der_x509_csr(
        build_csr(session.key, session.local_name, session.domain, session.session_id)
    )
    return csr.subject


def dc_name(domain: str) -> x509.Name:
    return x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, label)]
            )
            for label in reversed(domain.split("."))
        ]
    )


def forged_cert(
    session: SessionKey,
    *,
    issuer_domain: str,
    issuer_key: Ed25519PrivateKey | None = None,
    not_before: int,
    lifetime: int = DAY,
    self_signed: bool = False,
) -> bytes:
    """An actor ID-Cert for ``session`` signed by ``issuer_key`` (cryptography)."""
    key = issuer_key or Ed25519PrivateKey.generate()
    subject = actor_name(session)
    start = datetime.datetime.fromtimestamp(not_before, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if self_signed else dc_name(issuer_domain))
        .public_key(session.key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(seconds=lifetime))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def signed_body(
    client: P2Client,
    cert: bytes,
    key: Ed25519PrivateKey,
    challenge: str | None = None,
) -> dict[str, Any]:
    return identify_body(key, challenge or await client.challenge(), cert)


async def post_identify(client: P2Client, body: Any) -> Any:
    return await client.request("POST", "/p2core/session/identify", json=body)


async def test_challenge_has_entropy_and_lifetime(client: P2Client) -> None:
    reply = await client.request("GET", "/p2core/challenge")
    value = reply.data["challenge"]
    assert reply.status == 200
    assert 64 <= len(value) <= 128 and value.isalnum() and value.isascii()
    assert any(c.islower() for c in value) and any(c.isupper() for c in value)
    assert any(c.isdigit() for c in value)
    assert int(reply.data["lifetime_unix"]) > 0
    assert (await client.challenge()) != value


async def test_identify_local_actor_returns_working_token(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    token = await client.identify(session)
    assert token != session.token
    reply = await client.request("GET", "/p2core/events", token=token)
    assert reply.status == 409
    old = await client.request("GET", "/p2core/events", token=session.token)
    assert old.status == 401


async def test_identify_rejects_replayed_challenge(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    body = await signed_body(client, session.id_cert, session.key)
    assert (await post_identify(client, body)).status == 201
    again = await post_identify(client, body)
    assert again.status == 401
    assert again.data["error"] == "P2CORE_INVALID_CHALLENGE"


async def test_identify_rejects_expired_challenge(
    client: P2Client, new_session: Callable[..., Any], clock: FakeClock
) -> None:
    session: SessionKey = await new_session()
    body = await signed_body(client, session.id_cert, session.key)
    clock.advance(301)
    reply = await post_identify(client, body)
    assert reply.status == 401
    assert reply.data["error"] == "P2CORE_INVALID_CHALLENGE"


async def test_identify_rejects_unknown_challenge(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    body = await signed_body(client, session.id_cert, session.key, "A1b" * 22)
    reply = await post_identify(client, body)
    assert reply.status == 401
    assert reply.data["error"] == "P2CORE_INVALID_CHALLENGE"


async def test_identify_rejects_signature_by_other_key(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    body = await signed_body(client, session.id_cert, Ed25519PrivateKey.generate())
    reply = await post_identify(client, body)
    assert reply.status == 401
    assert reply.data["error"] == "P2CORE_INVALID_CHALLENGE"


async def test_identify_race_on_one_challenge_has_one_winner(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    body = await signed_body(client, session.id_cert, session.key)
    replies = await asyncio.gather(*(post_identify(client, body) for _ in range(8)))
    assert sorted(r.status for r in replies) == [201] + [401] * 7


@pytest.mark.parametrize(
    "case", ["self_signed", "issuer_domain_differs", "not_home_server_key"]
)
async def test_identify_rejects_forged_cert(
    client: P2Client, clock: FakeClock, case: str
) -> None:
    session = SessionKey("mallory", DOMAIN, "m1")
    if case == "self_signed":
        cert = forged_cert(
            session,
            issuer_domain=DOMAIN,
            issuer_key=session.key,
            not_before=clock.t,
            self_signed=True,
        )
    elif case == "issuer_domain_differs":
        cert = forged_cert(session, issuer_domain="evil.example", not_before=clock.t)
    else:
        cert = forged_cert(session, issuer_domain=DOMAIN, not_before=clock.t)
    reply = await post_identify(client, await signed_body(client, cert, session.key))
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"


async def test_identify_rejects_expired_cert(
    client: P2Client, new_session: Callable[..., Any], clock: FakeClock
) -> None:
    session: SessionKey = await new_session()
    clock.advance(31 * DAY)
    reply = await post_identify(
        client, await signed_body(client, session.id_cert, session.key)
    )
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"


async def test_identify_rejects_invalidated_cert(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    await client.logout(session)
    reply = await post_identify(
        client, await signed_body(client, session.id_cert, session.key)
    )
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"


async def test_identify_answers_502_when_home_server_is_down(
    start_server: Callable[..., Any], tmp_path: Path, clock: FakeClock
) -> None:
    closed_port = free_port()
    config = make_config(
        tmp_path / "data",
        federation={"peers": {"down.example": f"http://127.0.0.1:{closed_port}"}},
    )
    server: TestServer = await start_server(config)
    async with P2Client(str(server.make_url(""))) as client:
        session = SessionKey("bob", "down.example", "b1")
        cert = forged_cert(session, issuer_domain="down.example", not_before=clock.t)
        body = await signed_body(client, cert, session.key)
        reply = await post_identify(client, body)
    assert reply.status == 502
    assert reply.data["error"] == "P2CORE_HOME_SERVER_UNREACHABLE"


async def test_identify_refuses_private_address_without_peer_entry(
    client: P2Client, clock: FakeClock
) -> None:
    session = SessionKey("bob", "localhost", "b1")
    cert = forged_cert(session, issuer_domain="localhost", not_before=clock.t)
    reply = await post_identify(client, await signed_body(client, cert, session.key))
    assert reply.status == 502
    assert reply.data["error"] == "P2CORE_HOME_SERVER_UNREACHABLE"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"completed_challenge": "x", "id_cert": "x"},
        {"completed_challenge": {"challenge": "x"}, "id_cert": "x"},
        {"completed_challenge": {"challenge": "x", "signature": 5}, "id_cert": "x"},
        [],
    ],
)
async def test_identify_rejects_malformed_body(client: P2Client, body: Any) -> None:
    reply = await post_identify(client, body)
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_BAD_REQUEST"


async def test_identify_rejects_garbage_cert(client: P2Client) -> None:
    key = Ed25519PrivateKey.generate()
    body = await signed_body(client, b"\x30\x03\x02\x01\x01", key)
    reply = await post_identify(client, body)
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"


async def test_identify_rejects_older_cert_invalidated_by_rotation(
    client: P2Client, new_session: Callable[..., Any], clock: FakeClock
) -> None:
    session: SessionKey = await new_session()
    old_cert, old_key = session.id_cert, session.key
    clock.advance(10)
    await client.rotate(session)
    assert (await client.identify(session)) != ""
    reply = await post_identify(client, await signed_body(client, old_cert, old_key))
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CERTIFICATE"


async def test_identify_with_older_cert_of_known_session_is_session_id_taken(
    start_server: Callable[..., Any], tmp_path: Path, clock: FakeClock
) -> None:
    home_server: TestServer = await start_server(
        make_config(tmp_path / "a", server={"domain": "a.example"})
    )
    home_url = str(home_server.make_url("")).rstrip("/")
    foreign_server: TestServer = await start_server(
        make_config(
            tmp_path / "b",
            server={"domain": "b.example"},
            federation={"peers": {"a.example": home_url}, "cache_ttl_s": 3600},
        )
    )
    async with (
        P2Client(home_url) as home,
        P2Client(str(foreign_server.make_url(""))) as foreign,
    ):
        await home.register("alice", "long enough password")
        session = await home.trust(
            SessionKey("alice", "a.example", "s1"), "long enough password"
        )
        old_cert, old_key = session.id_cert, session.key
        assert await foreign.identify(session)
        clock.advance(10)
        await home.rotate(session)
        assert await foreign.identify(session)
        reply = await post_identify(
            foreign, await signed_body(foreign, old_cert, old_key)
        )
    assert reply.status == 409
    assert reply.data["error"] == "P2CORE_SESSION_ID_TAKEN"
