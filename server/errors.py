"""The JSON errors of the REST API (PROTOCOL.md section 3)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["APIError", "ErrorCode"]


class ErrorCode(StrEnum):
    """Every error code of the contract; :attr:`status` is its HTTP status."""

    BAD_REQUEST = "P2CORE_BAD_REQUEST"
    INVALID_CSR = "P2CORE_INVALID_CSR"
    INVALID_CERTIFICATE = "P2CORE_INVALID_CERTIFICATE"
    INVALID_KEYPACKAGE = "P2CORE_INVALID_KEYPACKAGE"
    INVALID_CHALLENGE = "P2CORE_INVALID_CHALLENGE"
    UNAUTHORIZED = "P2CORE_UNAUTHORIZED"
    NOT_ADMINISTRATOR = "P2CORE_NOT_ADMINISTRATOR"
    REGISTRATION_CLOSED = "P2CORE_REGISTRATION_CLOSED"
    NOT_FEDERATED = "P2CORE_NOT_FEDERATED"
    NOT_FOUND = "P2CORE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "P2CORE_METHOD_NOT_ALLOWED"
    FEDERATION_ID_TAKEN = "P2CORE_FEDERATION_ID_TAKEN"
    SESSION_ID_TAKEN = "P2CORE_SESSION_ID_TAKEN"
    KEYPACKAGE_TAKEN = "P2CORE_KEYPACKAGE_TAKEN"
    PAYLOAD_TOO_LARGE = "P2CORE_PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "P2CORE_RATE_LIMITED"
    HOME_SERVER_UNREACHABLE = "P2CORE_HOME_SERVER_UNREACHABLE"
    INTERNAL = "P2CORE_INTERNAL"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_CSR: 400,
    ErrorCode.INVALID_CERTIFICATE: 400,
    ErrorCode.INVALID_KEYPACKAGE: 400,
    ErrorCode.INVALID_CHALLENGE: 401,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_ADMINISTRATOR: 403,
    ErrorCode.REGISTRATION_CLOSED: 403,
    ErrorCode.NOT_FEDERATED: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.FEDERATION_ID_TAKEN: 409,
    ErrorCode.SESSION_ID_TAKEN: 409,
    ErrorCode.KEYPACKAGE_TAKEN: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.HOME_SERVER_UNREACHABLE: 502,
    ErrorCode.INTERNAL: 500,
}


class APIError(Exception):
    """An error answered to the client as the contract's JSON error body.

    Args:
        code: the contract's error code; it fixes the HTTP status.
        message: one human sentence for the client.
        retry_after: seconds, sent as ``Retry-After`` (rate limits).
    """

    def __init__(
        self, code: ErrorCode, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.code.status
