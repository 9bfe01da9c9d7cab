"""Operational routes outside the protocol: health, metrics, discovery."""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import APIError, ErrorCode
from ..http import json_response
from ..state import STATE

__all__ = ["routes"]

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers."""
    state = request.app[STATE]
    try:
        await state.db.ping()
    except Exception as exc:
        logger.warning("health check failed error=%s", type(exc).__name__)
        raise APIError(ErrorCode.INTERNAL, "The database does not answer.") from exc
    return json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = state.metrics.render()
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


@routes.get("/.well-known/polyproto-core")
async def well_known(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response({"api": f"{state.config.base_url}/p2core/"})
