"""Small pieces several route modules need."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import actors

from ..errors import APIError, ErrorCode
from ..http import read_json
from ..names import split_fid
from ..state import ServerState

__all__ = ["body_if_any", "check_rate", "local_actor_fid", "parse_fid"]


def parse_fid(user_id: str, own_domain: str) -> tuple[str, str]:
    """Split an FID or bare local name into (local name, domain), lower-cased.

    Raises:
        APIError: it is not a valid FID or local name.
    """
    parts = split_fid(user_id, own_domain)
    if parts is None:
        raise APIError(ErrorCode.BAD_REQUEST, f"{user_id[:100]!r} is not a valid FID.")
    return parts


async def local_actor_fid(state: ServerState, user_id: str) -> str:
    """The FID of an actor registered here.

    Raises:
        APIError: malformed, or not registered on this server (404 NOT_FEDERATED).
    """
    local, domain = parse_fid(user_id, state.domain)
    if domain != state.domain or await actors.get_actor(state.db.reader, local) is None:
        raise APIError(ErrorCode.NOT_FEDERATED, "That actor is not registered here.")
    return f"{local}@{domain}"


async def body_if_any(request: web.Request) -> Any:
    """A GET route's optional JSON body, or None."""
    if not request.body_exists:
        return None
    return await read_json(request)


def check_rate(state: ServerState, request: web.Request, group: str) -> None:
    """Count a request against the caller's budget for one group of routes.

    Raises:
        APIError: the budget is used up (429 with Retry-After).
    """
    key = f"{group}:{request.remote or 'unknown'}"
    wait = state.limiter.check(key)
    if wait:
        raise APIError(
            ErrorCode.RATE_LIMITED,
            "Too many requests; try again later.",
            retry_after=wait,
        )
