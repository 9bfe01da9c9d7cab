"""Home-server routes fed with CSRs made by the ``openssl`` command."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509

from server.client import P2Client
from tests.conftest import DOMAIN, PASSWORD, FakeClock
from tests.openssl_tools import openssl, openssl_csr

SUBJECT = "/CN=alice/DC=com/DC=example/UID=alice@example.com/uniqueIdentifier={}"


async def trust(client: P2Client, csr: str) -> object:
    return await client.request(
        "POST",
        "/p2core/session/trust",
        json={"username": "alice", "password": PASSWORD, "csr": csr},
    )


async def test_openssl_csr_gets_cert_and_rotates(
    client: P2Client, tmp_path: Path, clock: FakeClock
) -> None:
    await client.register("alice", PASSWORD)
    csr_der = openssl_csr(tmp_path / "k1", SUBJECT.format("laptop"))
    pem = openssl("req", "-inform", "DER", "-outform", "PEM", stdin=csr_der).decode()
    reply = await trust(client, pem)
    assert reply.status == 201
    cert = x509.load_der_x509_certificate(base64.b64decode(reply.data["id_cert"]))
    first_token = reply.data["token"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.USER_ID)[0].value == (
        f"alice@{DOMAIN}"
    )
    issued_at = clock.t

    clock.advance(60)
    new_der = openssl_csr(tmp_path / "k2", SUBJECT.format("laptop"))
    rotated = await client.request(
        "POST",
        "/p2core/session/idcert",
        json={"csr": base64.b64encode(new_der).decode()},
        token=first_token,
    )
    assert rotated.status == 201
    refused = await client.request("GET", "/p2core/events", token=first_token)
    assert refused.status == 401
    assert refused.data["error"] == "P2CORE_UNAUTHORIZED"
    now = await client.actor_certs("alice")
    assert now == [base64.b64decode(rotated.data["id_cert"])]
    past = await client.actor_certs("alice", timestamp=issued_at + 1)
    assert [x509.load_der_x509_certificate(c).serial_number for c in past] == [
        cert.serial_number
    ]


@pytest.mark.parametrize(
    ("subject", "key", "extra"),
    [
        (
            "/CN=alice/DC=com/DC=example/UID=alice@example.com/2.5.4.45=s1",
            "ed25519",
            (),
        ),
        (SUBJECT.format("s1"), "rsa", ()),
        (SUBJECT.format("s1"), "ecdsa", ()),
        (SUBJECT.format("s1"), "ed25519", ("-addext", "basicConstraints=CA:TRUE")),
        (SUBJECT.format("x" * 33), "ed25519", ()),
        (
            "/CN=alice/DC=example/DC=com/UID=alice@example.com/uniqueIdentifier=s1",
            "ed25519",
            (),
        ),
        (
            "/CN=alice/DC=org/DC=other/UID=alice@other.org/uniqueIdentifier=s1",
            "ed25519",
            (),
        ),
    ],
    ids=[
        "x500-unique-identifier",
        "rsa",
        "ecdsa",
        "asks-ca",
        "session-id-33",
        "dc-wrong-order",
        "other-domain",
    ],
)
async def test_trust_refuses_openssl_mistakes(
    client: P2Client, tmp_path: Path, subject: str, key: str, extra: tuple[str, ...]
) -> None:
    await client.register("alice", PASSWORD)
    csr_der = openssl_csr(tmp_path, subject, key=key, extra=extra)
    reply = await trust(client, base64.b64encode(csr_der).decode())
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CSR"
    assert await client.actor_certs("alice") == []


@pytest.mark.parametrize(
    "csr",
    ["", "not base64 !!", base64.b64encode(b"\x30\x82\xff\xff").decode(), "A" * 4000],
)
async def test_trust_refuses_garbage_csr(client: P2Client, csr: str) -> None:
    await client.register("alice", PASSWORD)
    reply = await trust(client, csr)
    assert reply.status == 400
    assert reply.data["error"] == "P2CORE_INVALID_CSR"
