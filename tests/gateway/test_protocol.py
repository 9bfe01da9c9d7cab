"""Tests of the I/O-free gateway state machine (``gateway/protocol.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import CloseCode, ProtocolViolation
from gateway.messages import (
    ActorCertificateInvalidation,
    Heartbeat,
    Identify,
    Resume,
    ServiceChannel,
)
from gateway.protocol import ConnectionState, GatewayProtocol

INVALIDATION = {"serial": "5", "invalidSince": "1", "signature": "ab"}


def opened(highest_sent: int = -1) -> GatewayProtocol:
    protocol = GatewayProtocol()
    protocol.authenticated(highest_sent)
    return protocol


def test_protocol_starts_awaiting_auth() -> None:
    protocol = GatewayProtocol()
    assert protocol.state is ConnectionState.AWAITING_AUTH
    assert protocol.highest_sent == -1


@pytest.mark.parametrize(
    ("op", "d", "message"),
    [
        (0, {}, Heartbeat(None, None, ())),
        (2, {"token": "t"}, Identify("t")),
        (5, {"s": 3, "token": "t"}, Resume(3, "t")),
    ],
)
def test_protocol_before_auth_accepts_heartbeat_identify_resume(
    op: int, d: Any, message: Any
) -> None:
    assert GatewayProtocol().receive(op, d) == message


@pytest.mark.parametrize(
    ("op", "d"),
    [
        (8, {"action": "subscribe", "service": "chat"}),
        (8, "malformed"),
        (4, INVALIDATION),
        (4, None),
    ],
)
def test_protocol_before_auth_rejects_other_frames_with_4003(op: int, d: Any) -> None:
    with pytest.raises(ProtocolViolation, match="identify first") as info:
        GatewayProtocol().receive(op, d)
    assert info.value.close_code is CloseCode.NOT_AUTHENTICATED


def test_protocol_before_auth_heartbeat_range_closes_4007() -> None:
    with pytest.raises(ProtocolViolation, match="never sent") as info:
        GatewayProtocol().receive(0, {"from": 0, "to": 0})
    assert info.value.close_code is CloseCode.INVALID_SEQUENCE


@pytest.mark.parametrize(
    ("op", "d", "code"),
    [
        (99, {}, CloseCode.UNKNOWN_OPCODE),
        (1, {}, CloseCode.UNKNOWN_OPCODE),
        (2, {}, CloseCode.INVALID_PAYLOAD),
        (5, {"token": "t"}, CloseCode.INVALID_PAYLOAD),
        (0, [], CloseCode.INVALID_PAYLOAD),
    ],
)
def test_protocol_before_auth_bad_frame_gets_its_close_code(
    op: int, d: Any, code: CloseCode
) -> None:
    with pytest.raises(ProtocolViolation) as info:
        GatewayProtocol().receive(op, d)
    assert info.value.close_code is code


def test_protocol_authenticated_opens_and_accepts_everything_else() -> None:
    protocol = opened(4)
    assert protocol.state is ConnectionState.OPEN
    assert protocol.highest_sent == 4
    assert protocol.receive(8, {"action": "subscribe", "service": "x"}) == (
        ServiceChannel("subscribe", "x")
    )
    assert protocol.receive(4, INVALIDATION) == ActorCertificateInvalidation(5, 1, "ab")
    assert protocol.receive(0, {"from": 0, "to": 4}) == Heartbeat(0, 4, ())


@pytest.mark.parametrize(
    ("op", "d"), [(2, {"token": "t"}), (5, {"s": 0, "token": "t"})]
)
def test_protocol_second_authentication_closes_4005(op: int, d: Any) -> None:
    with pytest.raises(ProtocolViolation, match="already authenticated") as info:
        opened().receive(op, d)
    assert info.value.close_code is CloseCode.ALREADY_AUTHENTICATED


@pytest.mark.parametrize(
    ("highest_sent", "d"),
    [
        (-1, {"from": 0, "to": 0}),
        (4, {"from": 0, "to": 5}),
        (4, {"from": 5, "to": 5}),
        (4, {"from": "6", "to": "9", "except": ["7"]}),
    ],
)
def test_protocol_heartbeat_naming_unsent_number_closes_4007(
    highest_sent: int, d: Any
) -> None:
    with pytest.raises(ProtocolViolation, match="never sent") as info:
        opened(highest_sent).receive(0, d)
    assert info.value.close_code is CloseCode.INVALID_SEQUENCE


def test_protocol_sent_raises_highest_number_only() -> None:
    protocol = opened(2)
    protocol.sent(7)
    protocol.sent(5)
    assert protocol.highest_sent == 7
    assert protocol.receive(0, {"from": 0, "to": 7}) == Heartbeat(0, 7, ())


def test_protocol_authenticated_keeps_higher_number_sent_before() -> None:
    protocol = GatewayProtocol()
    protocol.sent(9)
    protocol.authenticated(3)
    assert protocol.highest_sent == 9


def test_protocol_authenticated_twice_is_a_state_error() -> None:
    protocol = opened()
    with pytest.raises(RuntimeError, match="cannot authenticate in state open"):
        protocol.authenticated(0)


def test_protocol_closed_refuses_frames() -> None:
    protocol = opened()
    protocol.closed()
    assert protocol.state is ConnectionState.CLOSED
    with pytest.raises(RuntimeError, match="closed connection"):
        protocol.receive(0, {})
    with pytest.raises(RuntimeError, match="cannot authenticate in state closed"):
        protocol.authenticated(0)
