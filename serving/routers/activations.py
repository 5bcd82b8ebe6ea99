"""``POST /v1/activations``: capture only; activations come back base64-encoded."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from oracle.engines import CaptureRequest
from serving.routers import get_service
from serving.routers.query import ERRORS, input_texts, target_input_of
from serving.schemas import ActivationsRequest, ActivationsResponse
from serving.service import OracleService
from serving.tensors import encode_tensor

router = APIRouter(tags=["oracle"])


@router.post("/v1/activations", response_model=ActivationsResponse, responses=ERRORS)
async def activations(
    body: ActivationsRequest, service: OracleService = Depends(get_service)
) -> ActivationsResponse:
    """Activations of the target, shape (n_layers, n_positions, d_model), as base64 bytes."""
    service.check_model(body.model)
    service.limits.chars(input_texts(body))
    async with service.admit("query"):
        layers = body.layers if body.layers is not None else [None]
        cap = await service.capture(CaptureRequest(target_input_of(body), layers, body.positions))
    return ActivationsResponse(
        model=service.oracle_id,
        activations=encode_tensor(cap.activations, body.dtype),
        layers=cap.layers,
        positions=cap.positions,
        tokens_read=cap.read_tokens,
        tokens=cap.tokens,
    )
