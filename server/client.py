"""A small asyncio client for the p2core REST routes, used by the tests and the demo.

It makes the keys and CSRs a polyproto client would, and calls the routes with
aiohttp. Every call returns a :class:`Reply`; the convenience methods raise
:class:`ClientError` when the server answers with an error.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = [
    "ClientError",
    "P2Client",
    "Reply",
    "SessionKey",
    "build_csr",
    "identify_body",
    "sign_challenge",
]

UNIQUE_IDENTIFIER = ObjectIdentifier("0.9.2342.19200300.100.1.44")


class ClientError(Exception):
    """The server answered with an error."""

    def __init__(self, reply: Reply) -> None:
        code = reply.data.get("error") if isinstance(reply.data, dict) else None
        super().__init__(f"status {reply.status} {code or ''}".strip())
        self.reply = reply
        self.status = reply.status
        self.code = code


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)

    def ok(self) -> Reply:
        """Return self, or raise :class:`ClientError` for a 4xx/5xx status."""
        if self.status >= 400:
            raise ClientError(self)
        return self


def build_csr(
    key: Ed25519PrivateKey,
    local_name: str,
    domain: str,
    session_id: str,
) -> bytes:
    """A DER ID-CSR with the polyproto pDN for ``local_name@domain``."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, local_name)]
    for label in reversed(domain.split(".")):
        attributes.append(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, label))
    attributes += [
        x509.NameAttribute(
            NameOID.USER_ID, f"{local_name}@{domain}", _type=_ASN1Type.IA5String
        ),
        x509.NameAttribute(UNIQUE_IDENTIFIER, session_id, _type=_ASN1Type.IA5String),
    ]
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    csr = builder.sign(key, None)
    return csr.public_bytes(serialization.Encoding.DER)


def sign_challenge(key: Ed25519PrivateKey, challenge: str) -> str:
    """Base64 of the Ed25519 signature over the challenge's UTF-8 bytes."""
    return base64.b64encode(key.sign(challenge.encode())).decode()


def identify_body(
    key: Ed25519PrivateKey, challenge: str, id_cert: bytes | str
) -> dict[str, Any]:
    """The body of ``POST /p2core/session/identify``: the signed challenge and cert.

    ``id_cert`` is DER (sent as base64) or already-encoded text sent as it is.
    """
    cert_text = id_cert if isinstance(id_cert, str) else base64.b64encode(id_cert)
    return {
        "completed_challenge": {
            "challenge": challenge,
            "signature": sign_challenge(key, challenge),
        },
        "id_cert": cert_text if isinstance(cert_text, str) else cert_text.decode(),
    }


@dataclass(slots=True)
class SessionKey:
    """A client's session: its key pair, and once trusted its ID-Cert and token."""

    local_name: str
    domain: str
    session_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    id_cert: bytes = b""
    token: str = ""

    @property
    def fid(self) -> str:
        return f"{self.local_name}@{self.domain}"

    def csr(self) -> str:
        """Base64 DER of a CSR for this session's key."""
        der = build_csr(self.key, self.local_name, self.domain, self.session_id)
        return base64.b64encode(der).decode()

    def rekey(self) -> None:
        self.key = Ed25519PrivateKey.generate()


class P2Client:
    """Calls one server's ``/p2core/`` routes."""

    def __init__(
        self, base_url: str, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._owns_http = http is None

    async def __aenter__(self) -> P2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; decode a JSON answer, keep other answers as text."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if json is not None:
            body = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        async with self._http.request(
            method, self.base_url + path, data=body, headers=headers, params=params
        ) as response:
            raw = await response.read()
            data: Any = raw.decode(errors="replace")
            if response.content_type == "application/json" and raw:
                data = orjson.loads(raw)
            return Reply(response.status, data, dict(response.headers))

    # -- home server

    async def register(self, username: str, password: str) -> str:
        reply = await self.request(
            "POST",
            "/p2core/identity",
            json={"username": username, "password": password},
        )
        return str(reply.ok().data["fid"])

    async def trust(self, session: SessionKey, password: str) -> SessionKey:
        """Log in ``session`` with a password; store its ID-Cert and token."""
        reply = await self.request(
            "POST",
            "/p2core/session/trust",
            json={
                "username": session.local_name,
                "password": password,
                "csr": session.csr(),
            },
        )
        data = reply.ok().data
        session.id_cert = base64.b64decode(data["id_cert"])
        session.token = data["token"]
        return session

    async def rotate(self, session: SessionKey) -> SessionKey:
        """Key rotation: a new key, ID-Cert and token for the same session."""
        session.rekey()
        reply = await self.request(
            "POST",
            "/p2core/session/idcert",
            json={"csr": session.csr()},
            token=session.token,
        )
        data = reply.ok().data
        session.id_cert = base64.b64decode(data["id_cert"])
        session.token = data["token"]
        return session

    async def logout(self, session: SessionKey) -> None:
        (await self.request("DELETE", "/p2core/session", token=session.token)).ok()

    # -- any server

    async def server_cert(self, timestamp: int | None = None) -> bytes:
        params = None if timestamp is None else {"timestamp": str(timestamp)}
        reply = await self.request("GET", "/p2core/key/server", params=params)
        return base64.b64decode(reply.ok().data)

    async def actor_certs(
        self, user_id: str, timestamp: int | None = None
    ) -> list[bytes]:
        params = None if timestamp is None else {"timestamp": str(timestamp)}
        reply = await self.request("GET", f"/p2core/key/user/{user_id}", params=params)
        return [base64.b64decode(c) for c in reply.ok().data]

    async def challenge(self) -> str:
        reply = await self.request("GET", "/p2core/challenge")
        return str(reply.ok().data["challenge"])

    async def identify(self, session: SessionKey) -> str:
        """Authenticate ``session`` on this server by challenge; return the token."""
        reply = await self.request(
            "POST",
            "/p2core/session/identify",
            json=identify_body(session.key, await self.challenge(), session.id_cert),
        )
        return str(reply.ok().data["token"])
