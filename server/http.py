"""HTTP plumbing shared by every route: JSON bodies, errors and the error middleware."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from storage.errors import ActorExists, InitKeyTaken, SessionIDTaken

from .certs import InvalidCSR, InvalidIDCert
from .errors import APIError, ErrorCode
from .keypackage import KeyPackageError
from .state import STATE

__all__ = [
    "Handler",
    "decode_base64",
    "error_middleware",
    "error_response",
    "json_response",
    "parse_timestamp",
    "read_json",
    "require_object",
    "require_object_field",
    "require_str",
    "timestamp_param",
]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_TYPE: Final = "application/json"

_HTTP_CODES: Final = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def json_response(value: Any, status: int = 200) -> web.Response:
    """Answer ``value`` as JSON."""
    return web.Response(body=orjson.dumps(value), status=status, content_type=JSON_TYPE)


def error_response(error: APIError) -> web.Response:
    body = {"errcode": error.status, "error": str(error.code), "message": error.message}
    response = json_response(body, status=error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


async def read_json(request: web.Request) -> Any:
    """Decode the request body as JSON.

    Raises:
        APIError: the body is too large, empty or not JSON.
    """
    timeout = request.app[STATE].config.limits.body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            body = await request.read()
    except TimeoutError as exc:
        # A client that stalls (or a body aiohttp stopped parsing) must not hold
        # the request open for ever.
        raise APIError(
            ErrorCode.BAD_REQUEST, "The body did not arrive in time."
        ) from exc
    except web.RequestPayloadError as exc:
        raise APIError(
            ErrorCode.BAD_REQUEST, "The body could not be read (bad encoding)."
        ) from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(ErrorCode.BAD_REQUEST, "The body is not valid JSON.") from exc


def timestamp_param(request: web.Request, body: Any = None) -> int | None:
    """The optional ``timestamp`` of a GET route: query string first, then JSON body.

    Raises:
        APIError: the timestamp is not a whole number of UNIX seconds.
    """
    raw: Any = request.query.get("timestamp")
    if raw is None and isinstance(body, dict):
        raw = body.get("timestamp")
    if raw is None:
        return None
    return parse_timestamp(raw)


def parse_timestamp(raw: Any) -> int:
    """Read UNIX seconds given as a decimal string or a number."""
    if isinstance(raw, bool):
        raise APIError(ErrorCode.BAD_REQUEST, "The timestamp must be UNIX seconds.")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 12:
        value = int(raw)
    else:
        raise APIError(ErrorCode.BAD_REQUEST, "The timestamp must be UNIX seconds.")
    if not 0 <= value < 2**40:
        raise APIError(ErrorCode.BAD_REQUEST, "The timestamp is out of range.")
    return value


def _translate(exc: Exception) -> APIError | None:
    """Map a domain exception to the contract's error, or None if it is unexpected."""
    match exc:
        case APIError():
            return exc
        case InvalidCSR():
            return APIError(ErrorCode.INVALID_CSR, f"Invalid CSR: {exc}.")
        case InvalidIDCert():
            return APIError(ErrorCode.INVALID_CERTIFICATE, f"Invalid ID-Cert: {exc}.")
        case KeyPackageError():
            return APIError(ErrorCode.INVALID_KEYPACKAGE, f"Invalid KeyPackage: {exc}.")
        case ActorExists():
            return APIError(
                ErrorCode.FEDERATION_ID_TAKEN, "This name is already taken."
            )
        case SessionIDTaken():
            return APIError(
                ErrorCode.SESSION_ID_TAKEN,
                "This session ID is in use by a valid session.",
            )
        case InitKeyTaken():
            return APIError(
                ErrorCode.KEYPACKAGE_TAKEN, "A KeyPackage with this init_key exists."
            )
        case web.HTTPException() if exc.status in _HTTP_CODES:
            code = _HTTP_CODES[exc.status]
            return APIError(code, _HTTP_MESSAGES.get(exc.status, exc.reason + "."))
    return None


_HTTP_MESSAGES: Final = {
    404: "There is no such route.",
    405: "This route does not allow this method.",
    413: "The request body is too large.",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer every failure, expected or not, with the contract's JSON error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _translate(exc) or APIError(ErrorCode.BAD_REQUEST, exc.reason + ".")
    except Exception as exc:  # the boundary: nothing may escape as a bare 500
        translated = _translate(exc)
        if translated is None:
            logger.exception(
                "unexpected error method=%s path=%s", request.method, request.path
            )
            translated = APIError(ErrorCode.INTERNAL, "An internal error occurred.")
        error = translated
    if error.status >= 500 or error.status == 401:
        logger.warning(
            "request failed method=%s path=%s code=%s",
            request.method,
            request.path,
            error.code,
        )
    response = error_response(error)
    if request.body_exists and not request.content.is_eof():
        # The body was not read to its end (too slow, broken or refused early):
        # the connection cannot carry another request, so close it.
        response.force_close()
    return response


def require_object(body: Any) -> dict[str, Any]:
    """The body must be a JSON object.

    Raises:
        APIError: it is not.
    """
    if not isinstance(body, dict):
        raise APIError(ErrorCode.BAD_REQUEST, "The body must be a JSON object.")
    return body


def require_object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A required field of a JSON object body that is itself an object.

    Raises:
        APIError: the field is missing or not an object.
    """
    value = body.get(name)
    if not isinstance(value, dict):
        raise APIError(ErrorCode.BAD_REQUEST, f"The field {name!r} must be an object.")
    return value


def decode_base64(text: str) -> bytes:
    """Decode base64 in the standard or URL-safe alphabet, padded or not.

    Raises:
        ValueError: it is not base64.
    """
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def require_str(body: dict[str, Any], name: str, *, max_length: int = 65536) -> str:
    """A required string field of a JSON object body.

    Raises:
        APIError: the field is missing, not a string or too long.
    """
    value = body.get(name)
    if not isinstance(value, str):
        raise APIError(ErrorCode.BAD_REQUEST, f"The field {name!r} must be a string.")
    if len(value) > max_length:
        raise APIError(ErrorCode.BAD_REQUEST, f"The field {name!r} is too long.")
    return value
