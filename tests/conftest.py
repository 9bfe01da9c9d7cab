"""Shared fixtures: a fresh config and data directory per test, an app, a client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.client import P2Client, SessionKey
from server.config import Config

DOMAIN = "example.com"
PASSWORD = "correct horse battery"


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    config = Config().replace("server", domain=DOMAIN, data_dir=str(data_dir))
    config = config.replace("limits", rate_per_minute=100_000, body_timeout_s=2.0)
    config = config.replace("federation", cache_ttl_s=0)
    for section, values in sections.items():
        config = config.replace(section, **values)
    return config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


@pytest.fixture
async def start_server(
    aiohttp_server: Callable[..., Any],
) -> Callable[[Config], Any]:
    async def start(config: Config) -> TestServer:
        app: web.Application = create_app(config)
        return await aiohttp_server(app)  # type: ignore[no-any-return]

    return start


@pytest.fixture
async def server(start_server: Callable[[Config], Any], config: Config) -> TestServer:
    return await start_server(config)  # type: ignore[no-any-return]


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[P2Client]:
    async with P2Client(str(server.make_url(""))) as p2:
        yield p2


@pytest.fixture
def new_session(client: P2Client) -> Callable[..., Any]:
    """Register an actor (once) and trust a new session for it."""
    registered: set[str] = set()

    async def make(name: str = "alice", session_id: str = "s1") -> SessionKey:
        if name not in registered:
            await client.register(name, PASSWORD)
            registered.add(name)
        return await client.trust(SessionKey(name, DOMAIN, session_id), PASSWORD)

    return make


class FakeClock:
    """Stands in for ``server.clock.now``; tests move it with :meth:`advance`."""

    def __init__(self) -> None:
        self.t = int(time.time())

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: int) -> int:
        self.t += seconds
        return self.t

    async def sleep_until(self, t: int) -> None:
        """Stands in for ``server.clock.sleep_until``: time passes at once."""
        self.t = max(self.t, t)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("server.clock.now", fake)
    monkeypatch.setattr("server.clock.sleep_until", fake.sleep_until)
    return fake
