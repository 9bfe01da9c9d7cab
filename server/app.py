"""The aiohttp application factory: resources, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from gateway.hub import Hub
from storage import outbox
from storage.db import Database

from . import clock, identity
from .challenges import ChallengeStore
from .config import Config
from .events import EventBus
from .federation import FederationClient
from .http import Handler, error_middleware
from .metrics import Metrics
from .ratelimit import RateLimiter
from .rotation import renew_if_due
from .routes import register_routes
from .state import STATE, ServerState

__all__ = ["DATABASE_FILE", "create_app"]

logger = logging.getLogger(__name__)

DATABASE_FILE: Final = "p2core.sqlite3"
_HOUSEKEEPING_INTERVAL: Final = 60.0


def create_app(config: Config) -> web.Application:
    """Build the application; its resources open on startup and close on cleanup."""
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        middlewares=[_metrics_middleware, error_middleware],
    )
    app.cleanup_ctx.append(_resources(config))
    app.on_shutdown.append(_close_gateway)
    register_routes(app)
    return app


def _resources(
    config: Config,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        data_dir = config.data_path
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = await Database.open(data_dir / DATABASE_FILE)
        try:
            server_identity = await identity.load_or_create(
                db,
                data_dir,
                config.server.domain,
                config.server.server_cert_lifetime_days,
            )
        except BaseException:
            await db.close()
            raise
        hub = Hub()
        events = EventBus(hub, max_events=config.gateway.outbox_max_events)
        state = ServerState(
            config=config,
            db=db,
            identity=server_identity,
            hub=hub,
            events=events,
            challenges=ChallengeStore(),
            federation=FederationClient(config),
            metrics=_new_metrics(hub, events),
            limiter=RateLimiter(config.limits.rate_per_minute),
        )
        app[STATE] = state
        housekeeping = asyncio.create_task(_housekeeping(state))
        logger.info(
            "server ready domain=%s data_dir=%s", config.server.domain, data_dir
        )
        try:
            yield
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            await state.federation.close()
            await db.close()
            logger.info("server stopped")

    return context


def _new_metrics(hub: Hub, events: EventBus) -> Metrics:
    metrics = Metrics()
    metrics.counter("p2core_http_requests_total", "HTTP requests by route and status.")
    metrics.gauge(
        "p2core_events_stored_total",
        "Events written to session outboxes.",
        lambda: events.stored,
        kind="counter",
    )
    metrics.gauge(
        "p2core_gateway_connections",
        "Open authenticated gateway connections.",
        lambda: hub.connection_count,
    )
    return metrics


async def _housekeeping(state: ServerState) -> None:
    """Renew the server cert when due and trim outboxes by age, once a minute."""
    max_age = state.config.gateway.outbox_max_age_days * 86400
    while True:
        try:
            await renew_if_due(state)
            async with state.db.transaction() as conn:
                dropped = await outbox.trim_by_age(conn, clock.now() - max_age)
                await outbox.delete_orphan_payloads(conn)
            if dropped:
                logger.info("outbox trimmed by age dropped=%d", dropped)
        except Exception:
            logger.exception("housekeeping failed")
        await asyncio.sleep(_HOUSEKEEPING_INTERVAL)


async def _close_gateway(app: web.Application) -> None:
    state = app.get(STATE)
    if state is not None:
        await state.hub.close_all(1001, "server shutting down")


@web.middleware
async def _metrics_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    response = await handler(request)
    state = request.app.get(STATE)
    if state is not None:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        state.metrics.inc(
            "p2core_http_requests_total", route=name, status=str(response.status)
        )
    return response
