"""End-to-end tests of the home-server routes (PROTOCOL.md section 5)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from server.client import P2Client, SessionKey
from tests.conftest import DOMAIN, PASSWORD, FakeClock


async def test_register_returns_fid(client: P2Client) -> None:
    reply = await client.request(
        "POST", "/p2core/identity", json={"username": "Alice", "password": PASSWORD}
    )
    assert reply.status == 201
    assert reply.data == {"fid": f"alice@{DOMAIN}"}


async def test_register_rejects_taken_name(client: P2Client) -> None:
    await client.register("alice", PASSWORD)
    reply = await client.request(
        "POST", "/p2core/identity", json={"username": "ALICE", "password": PASSWORD}
    )
    assert reply.status == 409
    assert reply.data["error"] == "P2CORE_FEDERATION_ID_TAKEN"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "bob"},
        {"username": "bob", "password": "short"},
        {"username": "b@d", "password": PASSWORD},
        {"username": "x" * 65, "password": PASSWORD},
        {"username": 5, "password": PASSWORD},
        [],
        "text",
    ],
)
async def test_register_rejects_bad_body(client: P2Client, body: Any) -> None:
    reply = await client.request("POST", "/p2core/identity", json=body)
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_BAD_REQUEST"
    assert reply.data["errcode"] == 400


async def test_register_rejects_invalid_json(client: P2Client) -> None:
    reply = await client.request("POST", "/p2core/identity", body=b"{not json")
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_BAD_REQUEST"


async def test_trust_issues_cert_and_token(new_session: Callable[..., Any]) -> None:
    session: SessionKey = await new_session()
    cert = x509.load_der_x509_certificate(session.id_cert)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.USER_ID)[0].value == (
        f"alice@{DOMAIN}"
    )
    assert len(base64.urlsafe_b64decode(session.token + "==")) >= 32


async def test_trust_rejects_wrong_password_with_401(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    await new_session()
    reply = await client.request(
        "POST",
        "/p2core/session/trust",
        json={
            "username": "alice",
            "password": "wrong password",
            "csr": SessionKey("alice", DOMAIN, "s2").csr(),
        },
    )
    assert reply.status == 401
    assert reply.data["error"] == "P2CORE_UNAUTHORIZED"


async def test_trust_rejects_csr_of_other_actor(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    await new_session("alice")
    await new_session("bob")
    reply = await client.request(
        "POST",
        "/p2core/session/trust",
        json={
            "username": "alice",
            "password": PASSWORD,
            "csr": SessionKey("bob", DOMAIN, "s9").csr(),
        },
    )
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CSR"


async def test_trust_rejects_live_session_id(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    await new_session("alice", "s1")
    with pytest.raises(Exception) as info:
        await client.trust(SessionKey("alice", DOMAIN, "s1"), PASSWORD)
    assert getattr(info.value, "code", None) == "P2CORE_SESSION_ID_TAKEN"


async def test_rotate_kills_old_token_and_lists_certs(
    client: P2Client, new_session: Callable[..., Any], clock: FakeClock
) -> None:
    session: SessionKey = await new_session()
    old_token, old_cert = session.token, session.id_cert
    issued_at = clock.t
    clock.advance(100)
    await client.rotate(session)
    assert session.token != old_token
    reply = await client.request("GET", "/p2core/events", token=old_token)
    assert reply.status == 401
    assert reply.data["error"] == "P2CORE_UNAUTHORIZED"
    assert await client.actor_certs("alice") == [session.id_cert]
    past = await client.actor_certs(f"alice@{DOMAIN}", timestamp=issued_at + 50)
    assert past == [old_cert]
    assert await client.actor_certs("alice", timestamp=issued_at - 1) == []


async def test_logout_invalidates_cert(
    client: P2Client, new_session: Callable[..., Any]
) -> None:
    session: SessionKey = await new_session()
    reply = await client.request("DELETE", "/p2core/session", token=session.token)
    assert reply.status == 204
    assert await client.actor_certs("alice") == []
    listing = await client.request("GET", "/p2core/key/user/alice/invalidated")
    serial = x509.load_der_x509_certificate(session.id_cert).serial_number
    assert [item["serial"] for item in listing.data] == [str(serial)]
    again = await client.request("DELETE", "/p2core/session", token=session.token)
    assert again.status == 401


async def test_key_user_unknown_actor_is_not_federated(client: P2Client) -> None:
    reply = await client.request("GET", "/p2core/key/user/nobody")
    assert reply.status == 404
    assert reply.data["error"] == "P2CORE_NOT_FEDERATED"


async def test_logout_relays_signed_invalidation(
    client: P2Client, new_session: Callable[..., Any], clock: FakeClock
) -> None:
    leaving: SessionKey = await new_session("alice", "s1")
    staying: SessionKey = await new_session("alice", "s2")
    serial = x509.load_der_x509_certificate(leaving.id_cert).serial_number
    since = clock.t - 10
    signature = leaving.key.sign(f"{since}{serial}".encode()).hex()

    stale = await client.request(
        "DELETE",
        "/p2core/session",
        json={"invalidSince": str(clock.t - 301), "signature": signature},
        token=leaving.token,
    )
    forged = await client.request(
        "DELETE",
        "/p2core/session",
        json={"invalidSince": str(since), "signature": "00" * 64},
        token=leaving.token,
    )
    signed = await client.request(
        "DELETE",
        "/p2core/session",
        json={"invalidSince": str(since), "signature": signature},
        token=leaving.token,
    )

    assert (stale.status, stale.data["error"]) == (400, "P2CORE_BAD_REQUEST")
    assert (forged.status, forged.data["error"]) == (400, "P2CORE_BAD_REQUEST")
    assert signed.status == 204
    events = await client.request("GET", "/p2core/events", token=staying.token)
    assert events.data == [
        {
            "n": "core",
            "op": 4,
            "d": {
                "serial": str(serial),
                "invalidSince": str(since),
                "signature": signature,
            },
            "s": 0,
        }
    ]
