"""Foreign-server routes: challenges, identify and foreign key rotation
(PROTOCOL.md section 6; core spec section 4.1.1)."""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage import certs as cert_store
from storage import sessions as session_store
from storage.db import Connection
from storage.errors import SessionIDTaken
from storage.sessions import Session

from .. import clock
from ..auth import AUTH, Auth, authenticated_for_rotation, new_token, recheck
from ..certs import IDCert, InvalidIDCert, decode_cert_input, load_id_cert
from ..errors import APIError, ErrorCode
from ..federation import HomeServerUnreachable
from ..http import (
    decode_base64,
    json_response,
    read_json,
    require_object,
    require_object_field,
    require_str,
)
from ..state import STATE, ServerState
from ..trust import verify_actor_cert
from .common import check_rate

__all__ = ["routes"]

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/p2core/challenge")
async def get_challenge(request: web.Request) -> web.Response:
    """A fresh single-use challenge string."""
    state = request.app[STATE]
    check_rate(state, request, "challenge")
    value, expires = state.challenges.issue(clock.now())
    return json_response({"challenge": value, "lifetime_unix": str(expires)})


@routes.post("/p2core/session/identify")
async def identify(request: web.Request) -> web.Response:
    """Authenticate an actor of any server by a signed challenge and its ID-Cert."""
    state = request.app[STATE]
    check_rate(state, request, "credentials")
    body = require_object(await read_json(request))
    completed = require_object_field(body, "completed_challenge")
    challenge = require_str(completed, "challenge", max_length=256)
    signature = _decode_signature(require_str(completed, "signature", max_length=512))
    cert_text = require_str(body, "id_cert")
    now = clock.now()
    if not state.challenges.consume(challenge, now):
        raise APIError(
            ErrorCode.INVALID_CHALLENGE, "The challenge is unknown, used or expired."
        )
    cert = _load_cert(cert_text)
    try:
        Ed25519PublicKey.from_public_bytes(cert.public_key).verify(
            signature, challenge.encode()
        )
    except InvalidSignature as exc:
        logger.warning("challenge signature rejected serial=%d", cert.serial_number)
        raise APIError(
            ErrorCode.INVALID_CHALLENGE, "The challenge signature does not verify."
        ) from exc
    await _verify(state, cert, now)
    token = await _bind_session(state, cert, now)
    assert cert.subject is not None
    logger.info(
        "actor identified fid=%s session_id=%s serial=%d",
        cert.subject.fid,
        cert.subject.session_id,
        cert.serial_number,
    )
    return json_response({"token": token}, status=201)


@routes.post("/p2core/session/idcert/extern")
@authenticated_for_rotation
async def extern_idcert(request: web.Request) -> web.Response:
    """A foreign session presents the new ID-Cert its home server issued it."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    body = await read_json(request)
    if not isinstance(body, str):
        raise APIError(ErrorCode.BAD_REQUEST, "The body must be a JSON string.")
    cert = _load_cert(body)
    session = auth.session
    subject = cert.subject
    assert subject is not None
    if subject.fid != session.fid or subject.session_id != session.session_id:
        raise InvalidIDCert("the id-cert belongs to another actor or session")
    if not session.is_foreign:
        raise APIError(
            ErrorCode.BAD_REQUEST,
            "Sessions of this server rotate with /session/idcert.",
        )
    if cert.not_valid_before <= auth.cert.not_before:
        raise InvalidIDCert("the id-cert is not newer than the session's current one")
    now = clock.now()
    await _verify(state, cert, now)
    async with state.db.transaction() as conn:
        await recheck(conn, auth)
        await _store_cert(conn, session, cert)
    logger.info(
        "foreign id-cert replaced fid=%s serial=%d", session.fid, cert.serial_number
    )
    return web.Response(status=201)


def _decode_signature(text: str) -> bytes:
    """Base64 (standard or URL-safe, padded or not) of a 64-byte Ed25519 signature."""
    try:
        raw = decode_base64(text)
    except ValueError as exc:
        raise APIError(
            ErrorCode.INVALID_CHALLENGE, "The signature is not base64."
        ) from exc
    if len(raw) != 64:
        raise APIError(ErrorCode.INVALID_CHALLENGE, "The signature is not 64 bytes.")
    return raw


def _load_cert(text: str) -> IDCert:
    try:
        der = decode_cert_input(text)
    except ValueError as exc:
        raise InvalidIDCert("not base64 or pem") from exc
    return load_id_cert(der)


async def _verify(state: ServerState, cert: IDCert, now: int) -> None:
    try:
        await verify_actor_cert(state, cert, now)
    except HomeServerUnreachable as exc:
        logger.warning(
            "home server unreachable domain=%s reason=%s", exc.domain, exc.reason
        )
        raise APIError(
            ErrorCode.HOME_SERVER_UNREACHABLE,
            "The actor's home server could not be reached.",
        ) from exc


async def _bind_session(state: ServerState, cert: IDCert, now: int) -> str:
    """Create or update the session for ``cert`` and give it a new token."""
    subject = cert.subject
    assert subject is not None
    token, token_hash = new_token()
    # The common case, a client identifying again with the same cert: one write.
    renewed = await session_store.renew_token_for_cert(
        state.db,
        token_hash,
        fid=subject.fid,
        session_id=subject.session_id,
        issuer_domain=cert.issuer_domain,
        serial=cert.serial_number,
        now=now,
    )
    if renewed is not None:
        state.hub.close_session(renewed, 4003, "token replaced")
        return token
    async with state.db.transaction() as conn:
        found = await session_store.get_live_session_with_cert(
            conn, subject.fid, subject.session_id
        )
        if found is None:
            session = await session_store.create_session(
                conn,
                subject.fid,
                subject.session_id,
                is_foreign=subject.domain != state.domain,
                now=now,
            )
            await _store_cert(conn, session, cert)
        else:
            session, current = found
            if current is None or current.serial != cert.serial_number:
                if current is not None and cert.not_valid_before <= current.not_before:
                    raise SessionIDTaken(session.fid, session.session_id)
                await _store_cert(conn, session, cert)
        await session_store.replace_token(conn, token_hash, session.id, now)
    state.hub.close_session(session.id, 4003, "token replaced")
    return token


async def _store_cert(conn: Connection, session: Session, cert: IDCert) -> None:
    subject = cert.subject
    assert subject is not None
    try:
        stored = await cert_store.insert_cert(
            conn,
            session_ref=session.id,
            fid=subject.fid,
            serial=cert.serial_number,
            issuer_domain=cert.issuer_domain,
            der=cert.der,
            not_before=cert.not_valid_before,
            not_after=cert.not_valid_after,
        )
    except sqlite3.IntegrityError as exc:
        raise InvalidIDCert(
            "this id-cert was already used by an ended session"
        ) from exc
    await session_store.set_current_cert(conn, session.id, stored.id)
