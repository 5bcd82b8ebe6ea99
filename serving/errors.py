"""Every error the service answers, as JSON ``{"error": {"type", "message", "param", "code"}}``
with a 4xx.

Bad input never gets a 500: the core raises :class:`~oracle.errors.OracleInputError` (a
``ValueError``) with a message naming the problem, and the handlers here map it to 400.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from oracle.errors import OracleConfigError, OracleError, OracleInputError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with its HTTP status, error type and optional headers."""

    status_code = 400
    error_type = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ServiceBusy(ServiceError):
    """The queue of this kind of work is full: the client should slow down and retry after
    ``Retry-After`` seconds (429)."""

    status_code = 429
    error_type = "overloaded"


class ServiceUnavailable(ServiceError):
    """The server is not ready or is shutting down (503)."""

    status_code = 503
    error_type = "unavailable"


class ServiceTimeout(ServiceError):
    status_code = 504
    error_type = "timeout"


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found"


def error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one JSON shape of every error (a superset of OpenAI's: ``param`` and ``code`` too,
    so that OpenAI clients read every error of this server, the middleware's 401 and 413
    included)."""
    body = {"error": {"type": error_type, "message": message, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _is_tag(part: object) -> bool:
    # pydantic names the union member an error came from ("list[Message]", "none", "int").
    return isinstance(part, str) and ("[" in part or part in ("none", "int", "str", "float"))


def _field_of(loc: tuple) -> str:
    # ("body", "questions", 0) -> "questions[0]"; the "body" prefix names no field.
    parts = [p for p in loc if p not in ("body", "query", "path") and not _is_tag(p)]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_message(exc: RequestValidationError) -> str:
    """One line per problem, each naming its field."""
    lines = []
    errors = exc.errors()
    # an error against the None member of an optional field says only "should be None"
    errors = [e for e in errors if "none" not in e.get("loc", ())] or errors
    for err in errors[:10]:
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{_field_of(tuple(err.get('loc', ())))}: {msg}")
    return "; ".join(lines) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Map every known exception to its 4xx (or 5xx for overload/timeout) JSON error."""

    @app.exception_handler(ServiceError)
    async def _service(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status_code, exc.error_type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, error_type, str(exc.detail), exc.headers)

    @app.exception_handler(OracleConfigError)
    async def _config(_request: Request, exc: OracleConfigError) -> JSONResponse:
        return error_response(422, "oracle_config_error", str(exc))

    @app.exception_handler(OracleInputError)
    async def _input(_request: Request, exc: OracleInputError) -> JSONResponse:
        return error_response(400, "invalid_input", str(exc))

    @app.exception_handler(OracleError)
    async def _oracle(_request: Request, exc: OracleError) -> JSONResponse:
        return error_response(400, "oracle_error", str(exc))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback; the client gets the usual shape.
        log.error("internal error: %r", exc, exc_info=exc)
        return error_response(500, "internal_error", "internal server error (logged)")

    @app.exception_handler(ValueError)
    async def _value(_request: Request, exc: ValueError) -> JSONResponse:
        # A ValueError that escaped validation still comes from the input (a tokenizer, a
        # decoder): 400, and logged so that the missing check gets added.
        log.warning("unvalidated bad input: %s", exc)
        return error_response(400, "invalid_input", str(exc))
