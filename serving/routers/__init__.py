"""HTTP routers, one module per area; each exposes ``router`` (a FastAPI ``APIRouter``).

``serving.app.ROUTER_MODULES`` lists the modules the app includes; see serving/README.md.
"""

from __future__ import annotations

from fastapi import Request

from serving.service import OracleService


async def get_service(request: Request) -> OracleService:
    """The app's :class:`OracleService` (``request.app.state.service``): use as a dependency.

    ``async`` so that FastAPI calls it on the event loop: a plain function would cost every
    request a trip through the thread pool."""
    return request.app.state.service
