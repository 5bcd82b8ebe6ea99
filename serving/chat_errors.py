"""Errors of the OpenAI-compatible routes in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``, with the status codes its clients map to
their exceptions (400 ``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``,
429 ``RateLimitError``, ...).

Bad input is 400 here, field validation included (the server's other routes answer 422 for
it): OpenAI's clients and servers treat every invalid request alike. ``code`` carries the
server's own error type (``invalid_input``, ``overloaded``, ...), ``param`` the field at fault
when known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from oracle.errors import OracleConfigError, OracleError
from serving.errors import ServiceError, _field_of, validation_message

log = logging.getLogger(__name__)

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def classify(exc: BaseException) -> tuple[int, str, str, str | None, dict[str, str]]:
    """(status, server's error type, message, param, headers) of an exception."""
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        param = _field_of(tuple(errors[0].get("loc", ()))) if errors else None
        return 400, "validation_error", validation_message(exc), param, {}
    if isinstance(exc, ServiceError):
        return exc.status_code, exc.error_type, exc.message, None, exc.headers
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, "http_error", str(exc.detail), None, dict(exc.headers or {})
    if isinstance(exc, OracleConfigError):
        return 400, "oracle_config_error", str(exc), None, {}
    if isinstance(exc, OracleError | ValueError):  # OracleInputError is both
        return 400, "invalid_input", str(exc), None, {}
    log.error("internal error: %r", exc, exc_info=exc)
    return 500, "internal_error", "internal server error (logged)", None, {}


def openai_error_body(exc: BaseException) -> dict[str, Any]:
    status, code, message, param, _ = classify(exc)
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error_response(exc: BaseException) -> JSONResponse:
    status, *_, headers = classify(exc)
    return JSONResponse(openai_error_body(exc), status_code=status, headers=headers or None)


class OpenAIRoute(APIRoute):
    """A route whose every error (validation, service, input, a bug) is answered in OpenAI's
    shape; auth and body size are refused earlier, by the app's middleware."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error answers in OpenAI's shape
                return openai_error_response(exc)

        return openai_handler
