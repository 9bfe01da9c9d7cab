"""Home-server routes: accounts, sessions and ID-Certs from CSRs (PROTOCOL.md 5)."""

from __future__ import annotations

import logging
import sqlite3
from typing import Final

from aiohttp import web

from storage import actors
from storage import certs as cert_store
from storage import keypackages as kp_store
from storage import sessions as session_store
from storage.db import Connection
from storage.errors import SessionIDTaken
from storage.sessions import Session

from .. import clock
from ..auth import (
    AUTH,
    Auth,
    authenticated,
    check_password,
    hash_password,
    new_token,
    recheck,
)
from ..certs import (
    CSR,
    InvalidCSR,
    decode_cert_input,
    der_to_base64,
    der_to_pem,
    load_csr,
    load_id_cert,
)
from ..errors import APIError, ErrorCode
from ..events import EventOp
from ..http import (
    json_response,
    parse_timestamp,
    read_json,
    require_object,
    require_str,
)
from ..issuing import issue_actor_cert, new_serial_number
from ..names import is_local_name
from ..rotation import renew_if_due
from ..state import STATE, ServerState
from ..trust import verify_invalidation_signature
from .common import check_rate

__all__ = ["routes"]

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024
DAY: Final = 86400
_SIGNED_LOGOUT_WINDOW: Final = 300


@routes.post("/p2core/identity")
async def register(request: web.Request) -> web.Response:
    """Create an actor on this server."""
    state = request.app[STATE]
    check_rate(state, request, "credentials")
    body = require_object(await read_json(request))
    username = require_str(body, "username", max_length=64)
    password = require_str(body, "password", max_length=MAX_PASSWORD)
    if state.config.auth.registration != "open":
        raise APIError(ErrorCode.REGISTRATION_CLOSED, "Registration is closed.")
    username = username.lower() if username.isascii() else username
    if not is_local_name(username):
        raise APIError(
            ErrorCode.BAD_REQUEST,
            "The username must be 1 to 64 of a-z, 0-9 and . _ % + -.",
        )
    if len(password) < MIN_PASSWORD:
        raise APIError(
            ErrorCode.BAD_REQUEST, "The password needs at least 8 characters."
        )
    password_hash = await hash_password(password)
    async with state.db.transaction() as conn:
        await actors.create_actor(conn, username, password_hash, clock.now())
    fid = f"{username}@{state.domain}"
    logger.info("actor registered fid=%s", fid)
    return json_response({"fid": fid}, status=201)


@routes.post("/p2core/session/trust")
async def trust_session(request: web.Request) -> web.Response:
    """Log in with a password and a CSR: a new session with its ID-Cert and token."""
    state = request.app[STATE]
    check_rate(state, request, "credentials")
    body = require_object(await read_json(request))
    username = require_str(body, "username", max_length=64)
    username = username.lower() if username.isascii() else username
    password = require_str(body, "password", max_length=MAX_PASSWORD)
    csr_text = require_str(body, "csr")
    actor = await actors.get_actor(state.db.reader, username)
    stored_hash = actor.password_hash if actor is not None else None
    if not await check_password(password, stored_hash) or actor is None:
        raise APIError(ErrorCode.UNAUTHORIZED, "Wrong username or password.")
    csr = _load_csr(state, csr_text)
    if csr.subject.local_name != actor.local_name:
        raise InvalidCSR(f"uid {csr.subject.fid!r} is not the logged-in actor")
    await renew_if_due(state)
    now = clock.now()
    async with state.db.transaction() as conn:
        found = await session_store.get_live_session_with_cert(
            conn, csr.subject.fid, csr.subject.session_id
        )
        if found is not None:
            old, old_cert = found
            if old_cert is not None and old_cert.is_valid_at(now):
                raise SessionIDTaken(old.fid, old.session_id)
            await session_store.end_session(conn, old.id, now)
        session = await session_store.create_session(
            conn, csr.subject.fid, csr.subject.session_id, is_foreign=False, now=now
        )
        der, _ = await _issue_cert(state, conn, session, csr, now)
        token, token_hash = new_token()
        await session_store.insert_token(conn, token_hash, session.id, now)
        events = await state.events.store_for_actor(
            conn,
            session.fid,
            EventOp.NEW_SESSION,
            {"cert": der_to_pem(der)},
            skip_session=session.id,
        )
    state.events.publish(events)
    logger.info("session trusted fid=%s session_id=%s", session.fid, session.session_id)
    return json_response({"id_cert": der_to_base64(der), "token": token}, status=201)


@routes.post("/p2core/session/idcert")
@authenticated
async def rotate_session_cert(request: web.Request) -> web.Response:
    """Key rotation: a new ID-Cert and token for the caller's own session."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    body = require_object(await read_json(request))
    csr = _load_csr(state, require_str(body, "csr"))
    session = auth.session
    if csr.subject.fid != session.fid or session.is_foreign:
        raise InvalidCSR(f"uid {csr.subject.fid!r} is not the session's actor")
    if csr.subject.session_id != session.session_id:
        raise InvalidCSR(
            f"session id {csr.subject.session_id!r} is not the token's session"
        )
    await renew_if_due(state)
    now = clock.now()
    async with state.db.transaction() as conn:
        await recheck(conn, auth)
        await cert_store.invalidate_cert(conn, auth.cert.id, now)
        # KeyPackages signed with the old key can no longer be verified.
        await kp_store.delete_for_session(conn, session.id)
        der, _ = await _issue_cert(state, conn, session, csr, now)
        token, token_hash = new_token()
        await session_store.replace_token(conn, token_hash, session.id, now)
        events = await state.events.store_for_actor(
            conn,
            session.fid,
            EventOp.CLIENT_KEY_CHANGE,
            {
                "fid": session.fid,
                "session_id": session.session_id,
                "cert": der_to_pem(der),
                "oldInvalidSince": now,
            },
            skip_session=session.id,
        )
    state.events.publish(events)
    state.hub.close_session(session.id, 4003, "token replaced")
    logger.info("id-cert rotated fid=%s session_id=%s", session.fid, session.session_id)
    return json_response({"id_cert": der_to_base64(der), "token": token}, status=201)


@routes.delete("/p2core/session")
@authenticated
async def logout(request: web.Request) -> web.Response:
    """End the caller's session: its cert is invalidated and its token dies.

    The optional JSON body ``{"invalidSince": unix, "signature": hex}`` is the
    actor's Ed25519 signature over ``invalidSince`` then ``serial`` (decimal
    strings), with ``invalidSince`` no more than five minutes past. It is relayed
    in the invalidation event, so other clients can check it themselves.
    """
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    now = clock.now()
    signature = ""
    if request.body_exists:
        body = require_object(await read_json(request))
        if "signature" in body:
            signature = require_str(body, "signature", max_length=512)
            now = _signed_invalidation_time(body, auth, now, signature)
    async with state.db.transaction() as conn:
        await recheck(conn, auth)
        await cert_store.invalidate_cert(conn, auth.cert.id, now)
        await session_store.end_session(conn, auth.session.id, now)
        events = await state.events.store_invalidation(
            conn,
            auth.session.fid,
            skip_session=auth.session.id,
            serial=auth.cert.serial,
            invalid_since=now,
            signature=signature,
        )
    state.events.publish(events)
    state.hub.close_session(auth.session.id, 4003, "session ended")
    logger.info(
        "session ended fid=%s session_id=%s", auth.session.fid, auth.session.session_id
    )
    return web.Response(status=204)


def _signed_invalidation_time(
    body: dict[str, object], auth: Auth, now: int, signature: str
) -> int:
    """The ``invalidSince`` a logout signed, checked against the session's cert.

    Raises:
        APIError: missing, out of range, or the signature does not verify.
    """
    invalid_since = parse_timestamp(body.get("invalidSince"))
    if not now - _SIGNED_LOGOUT_WINDOW <= invalid_since <= now:
        raise APIError(
            ErrorCode.BAD_REQUEST, "invalidSince must lie in the last five minutes."
        )
    try:
        verify_invalidation_signature(
            load_id_cert(auth.cert.der).public_key,
            auth.cert.serial,
            invalid_since,
            signature,
        )
    except ValueError as exc:
        raise APIError(
            ErrorCode.BAD_REQUEST, "The invalidation signature does not verify."
        ) from exc
    return invalid_since


def _load_csr(state: ServerState, text: str) -> CSR:
    try:
        der = decode_cert_input(text)
    except ValueError as exc:
        raise InvalidCSR("not base64 or pem") from exc
    return load_csr(der, domain=state.domain)


async def _issue_cert(
    state: ServerState, conn: Connection, session: Session, csr: CSR, now: int
) -> tuple[bytes, cert_store.StoredCert]:
    """Sign the CSR, store the cert as the session's current one."""
    current = state.identity
    server = current.cert
    # Never before the issuer's own notBefore: a foreign server looks the issuer
    # up by this time (a cert issued in the second of a server key rotation).
    not_before = max(now, server.not_valid_before)
    if current.retiring_at is not None:
        not_before = min(not_before, current.retiring_at - 1)
    lifetime = state.config.certs.actor_lifetime_days * DAY
    not_after = min(now + lifetime, server.not_valid_after)
    for _ in range(5):
        serial = new_serial_number()
        der = issue_actor_cert(
            csr,
            issuer_key=current.key,
            issuer_cert=server,
            serial_number=serial,
            not_valid_before=not_before,
            not_valid_after=not_after,
        )
        try:
            stored = await cert_store.insert_cert(
                conn,
                session_ref=session.id,
                fid=session.fid,
                serial=serial,
                issuer_domain=state.domain,
                der=der,
                not_before=not_before,
                not_after=not_after,
            )
        except sqlite3.IntegrityError:
            continue  # a serial collision: draw another
        await session_store.set_current_cert(conn, session.id, stored.id)
        logger.info("id-cert issued fid=%s serial=%d", session.fid, serial)
        return der, stored
    raise RuntimeError("could not draw a unique serial number")
