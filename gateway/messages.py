"""Gateway frames: opcodes, orjson encoding and typed decoding (PROTOCOL.md section 8).

Client frames may carry numbers as decimal strings (polyproto-rs does); the server
always sends numbers. Events are serialized once, from their stored payload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import orjson

from storage.outbox import OutboxEvent

from .errors import CloseCode, ProtocolViolation

__all__ = [
    "ActorCertificateInvalidation",
    "ClientMessage",
    "Heartbeat",
    "Identify",
    "Op",
    "Resume",
    "ServiceChannel",
    "decode_client_frame",
    "encode_control",
    "encode_event",
    "encode_event_list",
    "parse_message",
]


class Op(IntEnum):
    """Gateway opcodes; 12 to 14 number the seed's Ready and two events."""

    HEARTBEAT = 0
    HELLO = 1
    IDENTIFY = 2
    NEW_SESSION = 3
    ACTOR_CERTIFICATE_INVALIDATION = 4
    RESUME = 5
    SERVER_CERTIFICATE_CHANGE = 6
    HEARTBEAT_ACK = 7
    SERVICE_CHANNEL = 8
    SERVICE_CHANNEL_ACK = 9
    RESUMED = 10
    HEARTBEAT_REQUEST = 11
    READY = 12
    CLIENT_KEY_CHANGE = 13
    LOW_KEYPACKAGES = 14


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Op 0: events ``first``..``last`` received, except ``excluded``."""

    first: int | None
    last: int | None
    excluded: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Identify:
    """Op 2: authenticate with a session token."""

    token: str


@dataclass(frozen=True, slots=True)
class Resume:
    """Op 5: authenticate and receive the events numbered above ``s``."""

    s: int
    token: str


@dataclass(frozen=True, slots=True)
class ServiceChannel:
    """Op 8: subscribe to or unsubscribe from a service's events."""

    action: str
    service: str


@dataclass(frozen=True, slots=True)
class ActorCertificateInvalidation:
    """Op 4 from a client: one of its actor's ID-Certs, signed as invalid."""

    serial: int
    invalid_since: int
    signature: str


# Sequence numbers and timestamps fit in SQLite's INTEGER; serial numbers of
# certificates take up to 20 octets (RFC 5280 section 4.1.2.2).
_MAX_NUMBER: Final = 2**63 - 1
_MAX_SERIAL: Final = 2**160 - 1

ClientMessage = (
    Heartbeat | Identify | Resume | ServiceChannel | ActorCertificateInvalidation
)


def encode_control(op: Op, d: Any) -> bytes:
    """A control frame: no sequence number, never stored."""
    return orjson.dumps({"n": "core", "op": int(op), "d": d})


def encode_event(event: OutboxEvent) -> bytes:
    """An event frame, spliced from the stored JSON payload without re-encoding it."""
    return b'{"n":"core","op":%d,"d":%s,"s":%d}' % (event.op, event.data, event.seq)


def encode_event_list(events: Iterable[OutboxEvent]) -> bytes:
    """A JSON array of event frames (Heartbeat ACK, Resumed, /p2core/events)."""
    return b"[" + b",".join(encode_event(e) for e in events) + b"]"


def _invalid(reason: str) -> ProtocolViolation:
    return ProtocolViolation(CloseCode.INVALID_PAYLOAD, reason)


def _number(
    value: Any, name: str, *, minimum: int = 0, maximum: int = _MAX_NUMBER
) -> int:
    """An integer sent as a JSON number or as a string of decimal digits."""
    if isinstance(value, bool):
        raise _invalid(f"{name} must be a number")
    if isinstance(value, str) and len(value) <= len(str(maximum)) + 1:
        text = value[1:] if value.startswith("-") else value
        if text.isascii() and text.isdigit():
            value = int(value)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise _invalid(
            f"{name} must be a number of at least {minimum}, "
            f"below 2**{maximum.bit_length()}"
        )
    return value


def _string(d: dict[str, Any], name: str, max_length: int = 4096) -> str:
    value = d.get(name)
    if not isinstance(value, str) or len(value) > max_length:
        raise _invalid(f"{name} must be a string")
    return value


def decode_client_frame(text: str | bytes) -> tuple[int, Any]:
    """Decode the envelope of a client frame into its opcode and raw ``d``.

    Raises:
        ProtocolViolation: not JSON, not an object, wrong namespace or opcode type.
    """
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _invalid("frame is not json") from exc
    if not isinstance(frame, dict):
        raise _invalid("frame is not an object")
    if frame.get("n", "core") != "core":
        raise _invalid("unknown namespace")
    return _number(frame.get("op"), "op"), frame.get("d")


def parse_message(op: int, d: Any) -> ClientMessage:
    """Turn a client opcode and payload into a typed message.

    Raises:
        ProtocolViolation: 4001 for an opcode clients may not send, 4002 for a
            payload of the wrong shape.
    """
    if op == Op.HEARTBEAT:
        return _heartbeat(d)
    if op not in (
        Op.IDENTIFY,
        Op.RESUME,
        Op.SERVICE_CHANNEL,
        Op.ACTOR_CERTIFICATE_INVALIDATION,
    ):
        raise ProtocolViolation(CloseCode.UNKNOWN_OPCODE, f"unknown opcode {op}")
    if not isinstance(d, dict):
        raise _invalid("d must be an object")
    if op == Op.IDENTIFY:
        return Identify(_string(d, "token"))
    if op == Op.RESUME:
        return Resume(_number(d.get("s"), "s", minimum=-1), _string(d, "token"))
    if op == Op.SERVICE_CHANNEL:
        action = _string(d, "action", 32)
        if action not in ("subscribe", "unsubscribe"):
            raise _invalid("action must be subscribe or unsubscribe")
        return ServiceChannel(action, _string(d, "service", 256))
    return ActorCertificateInvalidation(
        _number(d.get("serial"), "serial", minimum=1, maximum=_MAX_SERIAL),
        _number(d.get("invalidSince"), "invalidSince"),
        _string(d, "signature", 512),
    )


def _heartbeat(d: Any) -> Heartbeat:
    if d is None or d == {}:
        return Heartbeat(None, None, ())
    if not isinstance(d, dict):
        raise _invalid("d must be an object")
    if "from" not in d and "to" not in d:
        if "except" in d:
            raise _invalid("except needs from and to")
        return Heartbeat(None, None, ())
    first = _number(d.get("from"), "from")
    last = _number(d.get("to"), "to")
    if first > last:
        raise _invalid("from is greater than to")
    raw_excluded = d.get("except", [])
    if not isinstance(raw_excluded, list) or len(raw_excluded) > 10_000:
        raise _invalid("except must be a list")
    excluded = tuple(_number(v, "except") for v in raw_excluded)
    if any(not first <= v <= last for v in excluded):
        raise _invalid("except names a number outside from..to")
    return Heartbeat(first, last, excluded)
