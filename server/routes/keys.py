"""Key routes: the server ID-Cert and actors' ID-Certs (PROTOCOL.md section 6)."""

from __future__ import annotations

import logging

from aiohttp import web

from storage import certs as cert_store

from .. import clock
from ..auth import AUTH, Auth, authenticated
from ..certs import der_to_base64
from ..errors import APIError, ErrorCode
from ..http import json_response, timestamp_param
from ..rotation import rotate_server_identity
from ..state import STATE
from .common import body_if_any, local_actor_fid

__all__ = ["routes"]

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/p2core/key/server")
async def get_server_cert(request: web.Request) -> web.Response:
    """The server ID-Cert in force now, or at ``?timestamp=``."""
    state = request.app[STATE]
    at = timestamp_param(request, await body_if_any(request))
    if at is None:
        return json_response(der_to_base64(state.identity.cert.der))
    stored = await cert_store.server_cert_at(state.db.reader, at)
    if stored is None:
        raise APIError(ErrorCode.NOT_FOUND, "No server ID-Cert was valid at that time.")
    return json_response(der_to_base64(stored.der))


@routes.put("/p2core/key/server")
@authenticated
async def rotate_server_cert(request: web.Request) -> web.Response:
    """Replace the server key and ID-Cert (administrators only)."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    admins = {fid.lower() for fid in state.config.auth.admins}
    if auth.session.is_foreign or auth.session.fid not in admins:
        raise APIError(
            ErrorCode.NOT_ADMINISTRATOR, "Only an administrator may do this."
        )
    rotated = await rotate_server_identity(state)
    assert rotated is not None
    pem, _ = rotated
    logger.info("server id-cert replaced by admin=%s", auth.session.fid)
    return json_response(pem)


@routes.get("/p2core/key/user/{user_id}")
async def get_actor_certs(request: web.Request) -> web.Response:
    """The actor's valid ID-Certs now, or those valid at ``?timestamp=``."""
    state = request.app[STATE]
    fid = await local_actor_fid(state, request.match_info["user_id"])
    at = timestamp_param(request, await body_if_any(request))
    certs = await cert_store.list_certs_at(
        state.db.reader, fid, clock.now() if at is None else at
    )
    return json_response([der_to_base64(c.der) for c in certs])


@routes.get("/p2core/key/user/{user_id}/invalidated")
async def get_invalidated_certs(request: web.Request) -> web.Response:
    """The actor's invalidated ID-Certs, for foreign servers checking a cert."""
    state = request.app[STATE]
    fid = await local_actor_fid(state, request.match_info["user_id"])
    certs = await cert_store.list_invalidated(state.db.reader, fid)
    return json_response(
        [
            {"serial": str(c.serial), "invalidated_at": str(c.invalidated_at)}
            for c in certs
        ]
    )
