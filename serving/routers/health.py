"""Liveness, the served models and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from serving.routers import get_service
from serving.schemas import HealthResponse, ModelCard, ModelsResponse
from serving.service import OracleService

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthResponse, summary="Liveness (no API key needed)")
async def health(request: Request) -> HealthResponse:
    """200 once the engine is loaded and the server accepts requests."""
    return HealthResponse(status="ok", engine=request.app.state.service.engine.name)


@router.get("/v1/models", response_model=ModelsResponse, summary="The target and the oracle")
async def models(service: OracleService = Depends(get_service)) -> ModelsResponse:
    """The target, the oracle and its config (read layers, injection site, mode, ...)."""
    engine = service.engine
    s = service.settings
    return ModelsResponse(
        engine=engine.name,
        world=service.world,
        data=[
            ModelCard(id=service.target_id, role="target"),
            ModelCard(id=service.oracle_id, role="oracle", config=engine.config.to_dict()),
        ],
        d_model=engine.d_model,
        n_layers=engine.n_layers,
        limits=dict(
            **service.limits.as_dict(),
            max_body_bytes=s.max_body_bytes,
            queue_depth=s.queue_depth,
            max_jobs=s.max_jobs,
            timeout=s.timeout,
        ),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(service: OracleService = Depends(get_service)) -> Response:
    """Request counts and latencies, queue state, batch sizes and token counts."""
    return Response(service.metrics.render(), media_type=service.metrics.content_type)
