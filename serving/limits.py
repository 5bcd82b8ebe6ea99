"""Request-size limit as ASGI middleware: bodies over ``max_body_bytes`` get 413 before any
parsing, whether they announce a Content-Length or arrive chunked; a body that has not
arrived whole within ``body_timeout`` seconds gets 408 (a slow client holds no more than that)."""

from __future__ import annotations

import asyncio
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_response


class BodySizeLimitMiddleware:
    """Buffer the body up to the limit, then replay it to the app; beyond the limit, 413."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_timeout: float | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    def _too_slow(self) -> JSONResponse:
        return error_response(
            408,
            "request_timeout",
            f"the request body did not arrive within {self.body_timeout} s (--body-timeout)",
        )

    def _too_large(self, size: int | None) -> JSONResponse:
        held = f"{size} bytes" if size is not None else "more bytes than that"
        return error_response(
            413,
            "payload_too_large",
            f"the request body holds {held}; the server's limit is {self.max_body_bytes} bytes",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(int(length))(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        first: Message | None = None
        deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout
        while more:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                await self._too_slow()(scope, receive, send)
                return
            if message["type"] != "http.request":
                first = message  # a disconnect: hand it on
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await self._too_large(None)(scope, receive, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
