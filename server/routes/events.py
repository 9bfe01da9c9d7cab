"""``GET /p2core/events``: a session's undelivered events over HTTP (core spec 3.3)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.messages import encode_event_list
from storage import outbox

from ..auth import AUTH, Auth, authenticated
from ..state import STATE

__all__ = ["MAX_EVENTS_PER_CALL", "routes"]

routes = web.RouteTableDef()

MAX_EVENTS_PER_CALL: Final = 1000


@routes.get("/p2core/events")
@authenticated
async def get_events(request: web.Request) -> web.Response:
    """Hand out and remove the oldest undelivered events; 409 with no body if none."""
    state = request.app[STATE]
    auth: Auth = request[AUTH]
    session_ref = auth.session.id
    async with state.db.transaction() as conn:
        events = await outbox.pending(conn, session_ref, limit=MAX_EVENTS_PER_CALL + 1)
        more = len(events) > MAX_EVENTS_PER_CALL
        events = events[:MAX_EVENTS_PER_CALL]
        if events:
            await outbox.delete_through(conn, session_ref, events[-1].seq)
        dropped = await outbox.reset_dropped(conn, session_ref)
    headers = {}
    if dropped:
        headers["X-P2-Events-Dropped"] = str(dropped)
    if not events:
        return web.Response(status=409, headers=headers)
    if more:
        headers["X-P2-More"] = "true"
    return web.Response(
        body=encode_event_list(events), content_type="application/json", headers=headers
    )
