"""What every handler shares: the typed application state behind one ``AppKey``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from aiohttp import web

from storage.db import Database

from .config import Config
from .identity import ServerIdentity
from .metrics import Metrics
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from gateway.hub import Hub

    from .challenges import ChallengeStore
    from .events import EventBus
    from .federation import FederationClient

__all__ = ["STATE", "ServerState"]


@dataclass(slots=True)
class ServerState:
    """Long-lived resources of one running server."""

    config: Config
    db: Database
    identity: ServerIdentity
    hub: Hub
    events: EventBus
    challenges: ChallengeStore
    federation: FederationClient
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(60))
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.config.server.domain


STATE: Final = web.AppKey("state", ServerState)
