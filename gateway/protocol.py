"""The gateway's connection state machine, free of I/O (core spec section 3.2).

It takes decoded frames and says what they mean, or which close code they earn;
``gateway.session`` does the I/O that follows.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .errors import CloseCode, ProtocolViolation
from .messages import ClientMessage, Heartbeat, Identify, Op, Resume, parse_message

__all__ = ["ConnectionState", "GatewayProtocol"]


class ConnectionState(Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSED = "closed"


# Client opcodes that need an authenticated connection; others are 4001 or allowed.
_AFTER_AUTH = (Op.SERVICE_CHANNEL, Op.ACTOR_CERTIFICATE_INVALIDATION)


class GatewayProtocol:
    """What one connection may send next, and the highest event number it may ack."""

    def __init__(self) -> None:
        self.state = ConnectionState.AWAITING_AUTH
        self.highest_sent = -1

    def receive(self, op: int, d: Any) -> ClientMessage:
        """Check a client frame against the connection's state.

        Raises:
            ProtocolViolation: the frame is unknown, malformed or out of order.
        """
        if self.state is ConnectionState.CLOSED:
            raise RuntimeError("receive() called on a closed connection")
        if self.state is ConnectionState.AWAITING_AUTH and op in _AFTER_AUTH:
            raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "identify first")
        message = parse_message(op, d)
        if isinstance(message, Identify | Resume):
            if self.state is ConnectionState.OPEN:
                raise ProtocolViolation(
                    CloseCode.ALREADY_AUTHENTICATED, "already authenticated"
                )
        elif (
            isinstance(message, Heartbeat)
            and message.last is not None
            and message.last > self.highest_sent
        ):
            raise ProtocolViolation(
                CloseCode.INVALID_SEQUENCE,
                f"heartbeat names {message.last}, never sent",
            )
        return message

    def authenticated(self, highest_sent: int) -> None:
        """Identify or Resume succeeded; events up to ``highest_sent`` exist."""
        if self.state is not ConnectionState.AWAITING_AUTH:
            raise RuntimeError(f"cannot authenticate in state {self.state.value}")
        self.state = ConnectionState.OPEN
        self.highest_sent = max(self.highest_sent, highest_sent)

    def sent(self, seq: int) -> None:
        """An event with number ``seq`` went out on this connection."""
        if seq > self.highest_sent:
            self.highest_sent = seq

    def closed(self) -> None:
        self.state = ConnectionState.CLOSED
