"""KeyPackage routes: upload, last resort and one-time claims (PROTOCOL.md 5, 6)."""

from __future__ import annotations

import base64
import logging
from typing import Any, Final

from aiohttp import web

from storage import certs as cert_store
from storage import keypackages as kp_store
from storage import sessions as session_store
from storage.db import Connection
from storage.errors import InitKeyTaken
from storage.keypackages import Claim, StoredKeyPackage
from storage.outbox import OutboxEvent
from storage.sessions import Session

from .. import clock
from ..auth import AUTH, Auth, authenticated
from ..certs import load_id_cert
from ..errors import APIError, ErrorCode
from ..events import EventOp
from ..http import decode_base64, json_response, read_json
from ..keypackage import KeyPackageError, decode_keypackage, verify_keypackage
from ..state import STATE
from .common import local_actor_fid

__all__ = ["routes"]

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_BATCH: Final = 100


@routes.post("/p2core/keypackage/@me")
@authenticated
async def add_keypackages(request: web.Request) -> web.Response:
    """Store a batch of regular KeyPackages for the caller's session, all or nothing."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    _require_home_session(auth)
    body = await read_json(request)
    if not isinstance(body, list) or not body:
        raise APIError(
            ErrorCode.INVALID_KEYPACKAGE,
            "The body must be a non-empty JSON array of base64 KeyPackages.",
        )
    if len(body) > MAX_BATCH:
        raise APIError(
            ErrorCode.BAD_REQUEST, f"At most {MAX_BATCH} KeyPackages a call."
        )

    signature_key = load_id_cert(auth.cert.der).public_key
    now = clock.now()
    packages = [_checked(item, signature_key, now) for item in body]
    if len({p.init_key for p in packages}) != len(packages):
        raise InitKeyTaken("the batch repeats an init_key")
    async with state.db.transaction() as conn:
        await kp_store.add(conn, auth.session.id, packages)
    logger.info("keypackages added fid=%s count=%d", auth.session.fid, len(packages))
    return web.Response(status=201)


@routes.put("/p2core/keypackage_lr")
@authenticated
async def replace_last_resort(request: web.Request) -> web.Response:
    """Replace the caller's last-resort KeyPackage."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    _require_home_session(auth)
    body = await read_json(request)
    signature_key = load_id_cert(auth.cert.der).public_key
    package = _checked(body, signature_key, clock.now())
    async with state.db.transaction() as conn:
        await kp_store.replace_last_resort(conn, auth.session.id, package)
    logger.info("last-resort keypackage replaced fid=%s", auth.session.fid)
    return web.Response(status=204)


@routes.get("/p2core/keypackage/{user_id}")
@authenticated
async def claim_keypackages(request: web.Request) -> web.Response:
    """One KeyPackage per session of the actor, each handed out only once."""
    state = request.app[STATE]
    fid = await local_actor_fid(state, request.match_info["user_id"])
    threshold = state.config.keypackages.low_threshold
    now = clock.now()
    claimed: list[str] = []
    events: list[OutboxEvent] = []
    async with state.db.transaction() as conn:
        for session in await session_store.list_live_sessions(conn, fid):
            claim = await _claim(conn, session, now)
            if claim is None:
                continue
            claimed.append(base64.b64encode(claim.data).decode())
            # PROTOCOL.md 9: fewer than low_threshold left, or the last resort used.
            if claim.last_resort_used or claim.remaining < threshold:
                events += await state.events.store(
                    conn,
                    [session.id],
                    EventOp.LOW_KEYPACKAGES,
                    {
                        "remaining": claim.remaining,
                        "last_resort_used": claim.last_resort_used,
                    },
                )
    state.events.publish(events)
    return json_response(claimed)


def _require_home_session(auth: Auth) -> None:
    """Only sessions of this server's actors keep KeyPackages here.

    Raises:
        APIError: the session belongs to an actor of another server.
    """
    # polyproto spec 6.1: servers only store KeyPackages for home server users.
    if auth.session.is_foreign:
        raise APIError(
            ErrorCode.BAD_REQUEST,
            "KeyPackages are stored on the actor's home server.",
        )


async def _claim(conn: Connection, session: Session, now: int) -> Claim | None:
    """Take one KeyPackage of a session whose current ID-Cert is valid at ``now``.

    A session whose cert expired or was invalidated cannot vouch for its
    KeyPackages; key rotation deletes the ones signed with the old key.
    """
    if session.current_cert_id is None:
        return None
    cert = await cert_store.get_cert(conn, session.current_cert_id)
    if cert is None or not cert.is_valid_at(now):
        return None
    return await kp_store.claim(conn, session.id, now)


def _checked(item: Any, signature_key: bytes, now: int) -> StoredKeyPackage:
    """Decode and verify one base64 KeyPackage against the session's ID-Cert key.

    The stored bytes are the uploaded ones, so a claim hands out exactly what the
    session uploaded (bare or wrapped in an MLSMessage).

    Raises:
        KeyPackageError: not a base64 string, malformed, or failing a rule.
    """
    if not isinstance(item, str):
        raise KeyPackageError("each keypackage must be a base64 string")
    try:
        raw = decode_base64(item)
    except ValueError as exc:
        raise KeyPackageError("not base64") from exc
    package = decode_keypackage(raw)
    verify_keypackage(package, signature_key=signature_key, now=now)
    assert package.not_after is not None
    return StoredKeyPackage(package.init_key, raw, package.not_after)
