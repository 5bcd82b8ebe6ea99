"""API-key check as ASGI middleware, so that every router (ours or added later) is covered.

With a key set, every path but ``/health`` and the web page ``/`` needs ``Authorization:
Bearer KEY`` or ``X-API-Key: KEY``; otherwise 401 with a JSON error.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import error_response

OPEN_PATHS = frozenset({"/health", "/"})


def key_of(headers: dict[bytes, bytes]) -> str | None:
    """The key a request carries, if any."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key is not None else None


class APIKeyMiddleware:
    """Refuse requests without the right key (constant-time comparison)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.api_key or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = key_of(dict(scope.get("headers", [])))
        if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            message = "missing API key" if given is None else "wrong API key"
            response = error_response(
                401,
                "unauthorized",
                f"{message}: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
