"""Replacing the server's key and root ID-Cert, on request or before it expires.

One rotation runs at a time. The new cert starts with a whole second after the
old one's start and the old one ends there, so that every timestamp names exactly
one server cert; the old cert is served until the new one's first second began.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Final

from . import clock, identity
from .certs import IDCert, der_to_pem
from .events import EventOp
from .state import ServerState

__all__ = ["renew_if_due", "rotate_server_identity"]

logger = logging.getLogger(__name__)

DAY: Final = 86400
_LOCK: Final = "rotation"


def _lock(state: ServerState) -> asyncio.Lock:
    return state.locks.setdefault(_LOCK, asyncio.Lock())


async def rotate_server_identity(
    state: ServerState, *, replacing: IDCert | None = None
) -> tuple[str, int] | None:
    """Replace the key and root cert; announce it to every session.

    Args:
        replacing: rotate only if this is still the current cert (renewal).

    Returns:
        The new cert as PEM and the second from which it is in force, or None
        when ``replacing`` was already replaced.
    """
    async with _lock(state):
        current = state.identity
        if replacing is not None and current.cert is not replacing:
            return None
        switched_at = max(clock.now(), current.cert.not_valid_before) + 1
        state.identity = dataclasses.replace(current, retiring_at=switched_at)
        new_identity = await identity.rotate(
            state.db,
            state.config.data_path,
            state.identity,
            state.config.server.server_cert_lifetime_days,
            switched_at,
        )
        await clock.sleep_until(switched_at)
        state.identity = new_identity
    pem = der_to_pem(new_identity.cert.der)
    async with state.db.transaction() as conn:
        events = await state.events.store_for_everyone(
            conn,
            EventOp.SERVER_CERTIFICATE_CHANGE,
            {"cert": pem, "oldInvalidSince": switched_at},
        )
    state.events.publish(events)
    return pem, switched_at


async def renew_if_due(state: ServerState) -> None:
    """Rotate when the root cert could no longer cover a full actor cert lifetime.

    Half the root's own lifetime at most, so that a short-lived root is not
    rotated on every call.
    """
    cert = state.identity.cert
    lifetime = cert.not_valid_after - cert.not_valid_before
    margin = min(state.config.certs.actor_lifetime_days * DAY, lifetime // 2)
    if cert.not_valid_after - clock.now() >= margin:
        return
    if await rotate_server_identity(state, replacing=cert) is not None:
        logger.info("server id-cert renewed before expiry old=%d", cert.serial_number)
