"""Gateway exceptions; each carries the WebSocket close code it ends with."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "GatewayError", "ProtocolViolation"]


class CloseCode(IntEnum):
    """Close codes of PROTOCOL.md section 8."""

    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    UNKNOWN_OPCODE = 4001
    INVALID_PAYLOAD = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQUENCE = 4007
    RATE_LIMITED = 4008
    HEARTBEAT_TIMEOUT = 4009
    UNRESUMABLE = 4010


class GatewayError(Exception):
    """Root of the gateway's exceptions."""


class ProtocolViolation(GatewayError):
    """The client broke the protocol; the connection closes with ``close_code``."""

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason
