"""Logs are structured and never carry secrets: tokens, passwords, private keys."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from server.client import P2Client, SessionKey
from tests.conftest import PASSWORD


async def test_logs_name_events_without_secrets(
    client: P2Client,
    new_session: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    session: SessionKey = await new_session()
    first_token = session.token
    token = await client.identify(session)
    session.token = token
    await client.rotate(session)
    await client.request("GET", "/p2core/events", token="wrong-token")
    text = "\n".join(r.getMessage() for r in caplog.records)
    private = session.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    ).hex()
    for secret in (PASSWORD, first_token, token, session.token, "wrong-token", private):
        assert secret not in text
    assert "session trusted fid=alice@example.com session_id=s1" in text
    assert any(r.name == "server.routes.home" for r in caplog.records)
