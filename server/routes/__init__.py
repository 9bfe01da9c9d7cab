"""REST handlers, one module per resource, registered on one application."""

from __future__ import annotations

from aiohttp import web

from . import events, foreign, home, keypackages, keys, meta

__all__ = ["register_routes"]


def register_routes(app: web.Application) -> None:
    """Add every route of the contract to ``app``."""
    for module in (meta, keys, home, foreign, keypackages, events):
        app.router.add_routes(module.routes)
    from gateway.session import gateway_handler

    app.router.add_get("/p2core/gateway", gateway_handler)
