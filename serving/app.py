"""The FastAPI app: middleware, error handlers, and every router listed in ROUTER_MODULES.

``create_app(settings)`` loads the engine at start-up (lifespan); ``create_app(settings,
engine=...)`` serves an engine built elsewhere (tests, notebooks), which it does not close.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from oracle.engines import Engine
from serving.auth import APIKeyMiddleware
from serving.errors import install_error_handlers
from serving.limits import BodySizeLimitMiddleware
from serving.metrics import Metrics, MetricsMiddleware
from serving.service import OracleService, load_engine
from serving.settings import ServeSettings

log = logging.getLogger(__name__)

# Every router the app includes, in order. A module that does not exist is skipped (a use not
# installed); one that exists but fails to import is an error. Add yours here.
ROUTER_MODULES: tuple[str, ...] = (
    "serving.routers.health",
    "serving.routers.page",
    "serving.routers.query",
    "serving.routers.activations",
    "serving.routers.oracle",
    "serving.routers.audit",
    "serving.routers.steer",
    "serving.routers.chat",
)

DESCRIPTION = """Ask a language model's activations questions in plain language.

`POST /v1/query` reads the target's activations on a conversation and asks the oracle about
them; `/v1/activations` captures only; `/v1/oracle` answers about activations sent by the
client. Errors are JSON `{"error": {"type", "message"}}`. With an API key set, send
`Authorization: Bearer KEY` (or `X-API-Key`) to every endpoint but `/health`.
"""


def include_routers(app: FastAPI, modules: tuple[str, ...] = ROUTER_MODULES) -> list[str]:
    """Include each module's ``router``; returns the modules included."""
    included = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                log.debug("router %s not installed; skipped", name)
                continue
            raise
        app.include_router(module.router)
        included.append(name)
    return included


def limits_in_schema(app: FastAPI, settings: ServeSettings) -> None:
    """Publish the server's limits in its OpenAPI schema (maximum answer length, questions per
    request) and, with a key set, how to send it, so that clients and schema-driven fuzzers see
    what this server accepts."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for body in schema.get("components", {}).get("schemas", {}).values():
                props = body.get("properties", {})
                if "max_tokens" in props:
                    props["max_tokens"]["maximum"] = settings.max_new_tokens
                if "questions" in props and "max_tokens" in props:
                    props["questions"]["maxItems"] = settings.max_questions
            if settings.resolved_api_key():
                components = schema.setdefault("components", {})
                components["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
                schema["security"] = [{"bearer": []}, {"apiKey": []}]
                schema["paths"].get("/health", {}).get("get", {})["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: ServeSettings | None = None,
    engine: Engine | None = None,
    owns_engine: bool | None = None,
) -> FastAPI:
    """The app. ``app.state`` holds ``settings``, ``metrics`` and, once started, ``service``.

    Without ``engine`` the app loads one from ``settings`` at start-up and closes it at
    shutdown; a given engine is closed at shutdown only if ``owns_engine``.
    """
    settings = settings or ServeSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns = engine is None if owns_engine is None else owns_engine
        service = OracleService(
            engine if engine is not None else load_engine(settings), settings, metrics, owns
        )
        await service.start()
        app.state.service = service
        log.info("serving %s with the %s engine", service.oracle_id, service.engine.name)
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="Activation oracle",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Added last = outermost: the key is checked first, before anything reads the body (a
    # keyless client gets 401 whatever it sends), then the body's size while it is read.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
    )
    app.add_middleware(APIKeyMiddleware, api_key=settings.resolved_api_key())
    app.state.routers = include_routers(app)
    limits_in_schema(app, settings)
    return app
