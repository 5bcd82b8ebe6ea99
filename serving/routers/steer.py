"""``POST /v1/generate`` (the target's reply, optionally steered) and ``POST /v1/steer`` (compute
a steering vector through the oracle; ``GET /v1/steer/{job_id}`` for one run as a job).

Both need an engine holding the target in transformers (steering backpropagates through it);
the work is :class:`serving.steering.SteeringService`'s. Its jobs are kept on disk with
``--steer-jobs`` or ``--audit-root`` and resumed at start-up (:mod:`serving.steer_store`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from audit.jobs import STATE_DIR
from serving.routers import get_service
from serving.routers.query import ERRORS
from serving.service import OracleService
from serving.steer_schemas import (
    GenerateRequest,
    GenerateResponse,
    SteerJob,
    SteerRequest,
    SteerResult,
)
from serving.steer_store import SteerJobStore
from serving.steering import SteeringService


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's steering service, with its stored jobs loaded and the unfinished resumed."""
    settings = app.state.settings
    directory = settings.steer_jobs
    if directory is None and settings.audit_root:
        directory = Path(settings.audit_root) / STATE_DIR / "steer"
    store = SteerJobStore(directory) if directory else None
    steering = SteeringService(app.state.service, store)
    app.state.steering = steering
    steering.resume()
    try:
        yield
    finally:
        await steering.stop()


router = APIRouter(tags=["steering"], lifespan=lifespan)
STEER_ERRORS = {
    **ERRORS,
    202: {"description": "a job was started; poll /v1/steer/{job_id}"},
}


def get_steering(request: Request, service: OracleService = Depends(get_service)):
    """The app's steering service (one per app, made on first use)."""
    state = request.app.state
    if getattr(state, "steering", None) is None or state.steering.service is not service:
        state.steering = SteeringService(service)
    return state.steering


@router.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS)
async def generate_route(
    body: GenerateRequest, steering: SteeringService = Depends(get_steering)
) -> GenerateResponse:
    """The target's reply to each prompt (oracle adapter off), with the vector added at block
    ``steering.layer`` when ``steering`` is given."""
    replies = await steering.generate(body)
    return GenerateResponse(replies=replies, steered=body.steering is not None)


@router.post("/v1/steer", response_model=SteerResult | SteerJob, responses=STEER_ERRORS)
async def steer_route(body: SteerRequest, steering: SteeringService = Depends(get_steering)):  # type: ignore[valid-type]
    """Compute a steering vector: short runs answer with the vector, long ones (or
    ``background``) with 202 and a job id."""
    out = await steering.steer(body)
    if isinstance(out, SteerJob):
        return JSONResponse(out.model_dump(), status_code=202)
    return out


@router.get("/v1/steer/{job_id}", response_model=SteerJob, responses=ERRORS)
async def steer_job(job_id: str, steering: SteeringService = Depends(get_steering)) -> SteerJob:
    """The state of a steering job, with its vector once done."""
    return steering.job(job_id)


@router.delete("/v1/steer/{job_id}", response_model=SteerJob, responses=ERRORS)
async def cancel_steer_job(
    job_id: str, steering: SteeringService = Depends(get_steering)
) -> SteerJob:
    """Stop a queued or running steering job between two of its steps."""
    return steering.cancel(job_id)
