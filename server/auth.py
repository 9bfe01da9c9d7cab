"""Passwords, bearer tokens and the check every authenticated route uses."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from storage import sessions as session_store
from storage.certs import StoredCert
from storage.db import Connection
from storage.sessions import Session

from . import clock
from .errors import APIError, ErrorCode
from .federation import HomeServerUnreachable
from .http import Handler
from .state import STATE, ServerState

__all__ = [
    "AUTH",
    "Auth",
    "authenticated",
    "authenticated_for_rotation",
    "check_password",
    "hash_password",
    "hash_token",
    "new_token",
    "recheck",
    "resolve_token",
]

logger = logging.getLogger(__name__)

# scrypt with N=2**14, r=8 needs 16 MiB per hash: memory-hard, ~50 ms here.
_SCRYPT_N: Final = 2**14
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_DUMMY_HASH: Final = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43


@dataclass(frozen=True, slots=True)
class Auth:
    """The authenticated caller: its session and that session's current ID-Cert."""

    session: Session
    cert: StoredCert
    token_hash: bytes


AUTH: Final = "p2core.auth"


def new_token() -> tuple[str, bytes]:
    """A fresh token (32 random bytes, URL-safe base64) and its SHA-256."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


async def hash_password(password: str) -> str:
    """Hash a password with scrypt off the event loop."""
    salt = secrets.token_bytes(16)
    digest = await asyncio.to_thread(
        _scrypt, password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


async def check_password(password: str, stored: str | None) -> bool:
    """Compare a password with a stored hash; with none, do the same work, fail."""
    _, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
    salt_bytes = base64.urlsafe_b64decode(salt + "=" * (-len(salt) % 4))
    computed = await asyncio.to_thread(
        _scrypt, password, salt_bytes, int(n), int(r), int(p)
    )
    return stored is not None and hmac.compare_digest(_b64(computed), digest)


async def resolve_token(
    state: ServerState, token: str, now: int, *, check_home: bool = True
) -> Auth | None:
    """The live session a token belongs to, if its current ID-Cert is valid now.

    For a session of another server, the cert must also not be on its home
    server's invalidation list (cached; when the home server cannot be reached,
    the token is accepted, so that an outage there locks nobody out).
    ``check_home=False`` skips that list: for handing over the cert that
    replaced an invalidated one.
    """
    if not token or len(token) > 512 or not token.isascii():
        return None
    token_hash = hash_token(token)
    found = await session_store.session_for_token(state.db.reader, token_hash)
    if found is None:
        return None
    session, cert = found
    if not cert.is_valid_at(now):
        return None
    if (
        check_home
        and session.is_foreign
        and await _revoked_at_home(state, session, cert)
    ):
        return None
    return Auth(session, cert, token_hash)


async def _revoked_at_home(
    state: ServerState, session: Session, cert: StoredCert
) -> bool:
    try:
        revoked = await state.federation.invalidated_serials(
            session.fid, cert.issuer_domain
        )
    except HomeServerUnreachable as exc:
        logger.warning(
            "revocation check skipped fid=%s reason=%s", session.fid, exc.reason
        )
        return False
    return cert.serial in revoked


async def recheck(conn: Connection, auth: Auth) -> None:
    """Inside a write transaction: the caller's token still names the same cert.

    Two requests with one token may both pass :func:`authenticated`; this lets
    only the first of them change the session.

    Raises:
        APIError: the token or its cert was replaced or ended meanwhile (401).
    """
    found = await session_store.session_for_token(conn, auth.token_hash)
    if found is None or found[1].id != auth.cert.id:
        raise APIError(ErrorCode.UNAUTHORIZED, "A valid bearer token is required.")


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticated(handler: Handler) -> Handler:
    """Require a valid bearer token; the handler finds :class:`Auth` in request[AUTH].

    Raises:
        APIError: no token, or one that is unknown or dead (401).
    """
    return _authenticated(handler, check_home=True)


def authenticated_for_rotation(handler: Handler) -> Handler:
    """Like :func:`authenticated`, but a foreign session whose cert its home
    server invalidated (by a key rotation) still gets in, to present the new one.
    """
    return _authenticated(handler, check_home=False)


def _authenticated(handler: Handler, *, check_home: bool) -> Handler:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        token = bearer_token(request)
        state = request.app[STATE]
        auth = None
        if token is not None:
            auth = await resolve_token(state, token, clock.now(), check_home=check_home)
        if auth is None:
            raise APIError(ErrorCode.UNAUTHORIZED, "A valid bearer token is required.")
        request[AUTH] = auth
        return await handler(request)

    return wrapper
