"""KeyPackage routes: upload, last resort and one-time claims (PROTOCOL.md 5, 6)."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any, Final

from aiohttp import web

from storage import keypackages as kp_store
from storage import sessions as session_store
from storage.errors import InitKeyTaken
from storage.keypackages import StoredKeyPackage

from ..auth import AUTH, Auth, authenticated
from ..certs import load_id_cert
from ..errors import APIError, ErrorCode
from ..events import EventOp
from ..http import json_response, read_json
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
    body = await read_json(request)
    if not isinstance(body, list) or not body:
        raise APIError(ErrorCode.BAD_REQUEST, "The body must be a non-empty JSON array.")
    if len(body) > MAX_BATCH:
        raise APIError(ErrorCode.BAD_REQUEST, f"At most {MAX_BATCH} KeyPackages a call.")
    packages = [_checked(auth, item) for item in body]
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
    package = _checked(auth, await read_json(request))
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
    now = int(time.time())
    claimed: list[str] = []
    async with state.db.transaction() as conn:
        low: dict[int, dict[str, Any]] = {}
        for session in await session_store.list_live_sessions(conn, fid):
            claim = await kp_store.claim(conn, session.id, now)
            if claim is None:
                continue
            claimed.append(base64.b64encode(claim.data).decode())
            if claim.last_resort_used or claim.remaining < threshold:
                low[session.id] = {
                    "remaining": claim.remaining,
                    "last_resort_used": claim.last_resort_used,
                }
        events = []
        for session_ref, d in low.items():
            events += await state.events.store(
                conn, [session_ref], EventOp.LOW_KEYPACKAGES, d
            )
    state.events.publish(events)
    return json_response(claimed)


def _checked(auth: Auth, item: Any) -> StoredKeyPackage:
    """Decode and verify one base64 KeyPackage against the session's ID-Cert key.

    Raises:
        KeyPackageError: not base64, malformed, or failing a rule.
    """
    if not isinstance(item, str):
        raise KeyPackageError("each keypackage must be a base64 string")
    cleaned = item.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyPackageError("not base64") from exc
    package = decode_keypackage(raw)
    signature_key = load_id_cert(auth.cert.der).public_key
    verify_keypackage(package, signature_key=signature_key, now=int(time.time()))
    assert package.not_after is not None
    return StoredKeyPackage(package.init_key, package.raw, package.not_after)
