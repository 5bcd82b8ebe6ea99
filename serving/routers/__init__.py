"""HTTP routers, one module per area; each exposes ``router`` (a FastAPI ``APIRouter``).

``serving.app.ROUTER_MODULES`` lists the modules the app includes; see serving/README.md.
"""

from __future__ import annotations

from fastapi import Request

from serving.service import OracleService


def get_service(request: Request) -> OracleService:
    """The app's :class:`OracleService` (``request.app.state.service``): use as a dependency."""
    return request.app.state.service
