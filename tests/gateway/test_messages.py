"""Tests of gateway frame encoding and decoding (``gateway/messages.py``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import CloseCode, ProtocolViolation
from gateway.messages import (
    ActorCertificateInvalidation,
    ClientMessage,
    Heartbeat,
    Identify,
    Op,
    Resume,
    ServiceChannel,
    decode_client_frame,
    encode_control,
    encode_event,
    encode_event_list,
    parse_message,
)
from storage.outbox import OutboxEvent

SERIAL_20_OCTETS = 2**159 + 12345


def test_op_numbers_follow_the_contract() -> None:
    assert {op.name: op.value for op in Op} == {
        "HEARTBEAT": 0,
        "HELLO": 1,
        "IDENTIFY": 2,
        "NEW_SESSION": 3,
        "ACTOR_CERTIFICATE_INVALIDATION": 4,
        "RESUME": 5,
        "SERVER_CERTIFICATE_CHANGE": 6,
        "HEARTBEAT_ACK": 7,
        "SERVICE_CHANNEL": 8,
        "SERVICE_CHANNEL_ACK": 9,
        "RESUMED": 10,
        "HEARTBEAT_REQUEST": 11,
        "READY": 12,
        "CLIENT_KEY_CHANGE": 13,
        "LOW_KEYPACKAGES": 14,
    }


# -- encoding


def test_encode_control_has_no_sequence_number() -> None:
    frame = encode_control(Op.HELLO, {"heartbeat_interval": 45000})
    assert frame == b'{"n":"core","op":1,"d":{"heartbeat_interval":45000}}'


def test_encode_event_splices_stored_payload() -> None:
    event = OutboxEvent(7, 12, 3, b'{"cert":"-----BEGIN CERTIFICATE-----\\n"}')
    frame = encode_event(event)
    assert frame == (
        b'{"n":"core","op":3,"d":{"cert":"-----BEGIN CERTIFICATE-----\\n"},"s":12}'
    )
    assert orjson.loads(frame) == {
        "n": "core",
        "op": 3,
        "d": {"cert": "-----BEGIN CERTIFICATE-----\n"},
        "s": 12,
    }


def test_encode_event_list_joins_frames_in_order() -> None:
    events = [OutboxEvent(1, 0, 14, b"{}"), OutboxEvent(1, 1, 6, b"[1]")]
    assert orjson.loads(encode_event_list(events)) == [
        {"n": "core", "op": 14, "d": {}, "s": 0},
        {"n": "core", "op": 6, "d": [1], "s": 1},
    ]
    assert encode_event_list([]) == b"[]"


# -- the envelope


@pytest.mark.parametrize(
    ("text", "op", "d"),
    [
        ('{"n": "core", "op": 2, "d": {"token": "t"}}', 2, {"token": "t"}),
        (b'{"op": 0}', 0, None),
        ('{"op": "2", "d": 5}', 2, 5),
        ('{"op": "00", "d": null}', 0, None),
        ('{"op": 99, "d": [], "s": 3, "extra": true}', 99, []),
    ],
)
def test_decode_client_frame_returns_op_and_d(
    text: str | bytes, op: int, d: Any
) -> None:
    assert decode_client_frame(text) == (op, d)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "frame is not json"),
        ("{", "frame is not json"),
        ("{'op': 0}", "frame is not json"),
        (b"\xff\xfe", "frame is not json"),
        ("[]", "frame is not an object"),
        ("null", "frame is not an object"),
        ('"op"', "frame is not an object"),
        ('{"n": "other", "op": 0}', "unknown namespace"),
        ('{"n": null, "op": 0}', "unknown namespace"),
        ("{}", "op must be a number"),
        ('{"op": null}', "op must be a number"),
        ('{"op": true}', "op must be a number"),
        ('{"op": 1.0}', "op must be a number"),
        ('{"op": -1}', "op must be a number"),
        ('{"op": "-1"}', "op must be a number"),
        ('{"op": "1e2"}', "op must be a number"),
        ('{"op": "+1"}', "op must be a number"),
        ('{"op": " 1"}', "op must be a number"),
        ('{"op": "\u0661"}', "op must be a number"),
        ('{"op": 9223372036854775808}', "op must be a number"),
        ('{"op": "9223372036854775808"}', "op must be a number"),
        ('{"op": "' + "1" * 100 + '"}', "op must be a number"),
    ],
)
def test_decode_client_frame_rejects_bad_envelope(
    text: str | bytes, match: str
) -> None:
    with pytest.raises(ProtocolViolation, match=match) as info:
        decode_client_frame(text)
    assert info.value.close_code is CloseCode.INVALID_PAYLOAD


# -- payloads


@pytest.mark.parametrize(
    ("op", "d", "message"),
    [
        (0, None, Heartbeat(None, None, ())),
        (0, {}, Heartbeat(None, None, ())),
        (0, {"from": 0, "to": 0}, Heartbeat(0, 0, ())),
        (0, {"from": "3", "to": "9", "except": ["4", 8]}, Heartbeat(3, 9, (4, 8))),
        (0, {"from": 1, "to": 2, "except": []}, Heartbeat(1, 2, ())),
        (2, {"token": "abc"}, Identify("abc")),
        (2, {"token": "x" * 600}, Identify("x" * 600)),
        (5, {"s": 4, "token": "abc"}, Resume(4, "abc")),
        (5, {"s": "-1", "token": "abc"}, Resume(-1, "abc")),
        (5, {"s": "17", "token": ""}, Resume(17, "")),
        (
            8,
            {"action": "subscribe", "service": "chat"},
            ServiceChannel("subscribe", "chat"),
        ),
        (
            8,
            {"action": "unsubscribe", "service": ""},
            ServiceChannel("unsubscribe", ""),
        ),
        (
            4,
            {"serial": "5", "invalidSince": "1700000000", "signature": "ab"},
            ActorCertificateInvalidation(5, 1700000000, "ab"),
        ),
        (
            4,
            {
                "serial": str(SERIAL_20_OCTETS),
                "invalidSince": 1700000000,
                "signature": "ab",
            },
            ActorCertificateInvalidation(SERIAL_20_OCTETS, 1700000000, "ab"),
        ),
    ],
)
def test_parse_message_returns_typed_message(
    op: int, d: Any, message: ClientMessage
) -> None:
    assert parse_message(op, d) == message


@pytest.mark.parametrize("op", [1, 3, 6, 7, 9, 10, 11, 12, 13, 14, 15, 99, 2**62])
def test_parse_message_rejects_opcode_clients_may_not_send(op: int) -> None:
    with pytest.raises(ProtocolViolation, match=f"unknown opcode {op}") as info:
        parse_message(op, {})
    assert info.value.close_code is CloseCode.UNKNOWN_OPCODE


@pytest.mark.parametrize(
    ("op", "d", "match"),
    [
        (0, [], "d must be an object"),
        (0, "0", "d must be an object"),
        (0, {"from": 0}, "to must be a number"),
        (0, {"to": 0}, "from must be a number"),
        (0, {"from": -1, "to": 0}, "from must be a number"),
        (0, {"from": 2, "to": 1}, "from is greater than to"),
        (0, {"from": 0, "to": 1, "except": 1}, "except must be a list"),
        (0, {"from": 0, "to": 1, "except": [2]}, "outside from..to"),
        (0, {"from": 0, "to": 1, "except": ["a"]}, "except must be a number"),
        (0, {"from": 0, "to": 1, "except": [0] * 10_001}, "except must be a list"),
        (2, None, "d must be an object"),
        (2, "token", "d must be an object"),
        (2, {}, "token must be a string"),
        (2, {"token": None}, "token must be a string"),
        (2, {"token": 123}, "token must be a string"),
        (2, {"token": "x" * 4097}, "token must be a string"),
        (5, {"token": "t"}, "s must be a number"),
        (5, {"s": -2, "token": "t"}, "s must be a number"),
        (5, {"s": "x", "token": "t"}, "s must be a number"),
        (5, {"s": 0}, "token must be a string"),
        (8, {"action": "join", "service": "chat"}, "subscribe or unsubscribe"),
        (8, {"action": "subscribe"}, "service must be a string"),
        (8, {"action": "subscribe", "service": "x" * 257}, "service must be"),
        (4, {"serial": 0, "invalidSince": 1, "signature": "ab"}, "serial must be"),
        (
            4,
            {"serial": str(2**160), "invalidSince": 1, "signature": "ab"},
            "serial must be",
        ),
        (4, {"serial": 1, "invalidSince": "x", "signature": "a"}, "invalidSince"),
        (4, {"serial": 1, "invalidSince": 1}, "signature must be a string"),
    ],
)
def test_parse_message_rejects_wrong_shape(op: int, d: Any, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match) as info:
        parse_message(op, d)
    assert info.value.close_code is CloseCode.INVALID_PAYLOAD
