"""``POST /v1/oracle``: answer questions about activations the client sends."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from oracle.engines import AnswerRequest
from serving.routers import get_service
from serving.routers.query import ERRORS
from serving.schemas import AnswerOut, OracleRequest, OracleResponse, Usage
from serving.service import OracleService
from serving.tensors import decode_activations

router = APIRouter(tags=["oracle"])


@router.post("/v1/oracle", response_model=OracleResponse, responses=ERRORS)
async def oracle_answer(
    body: OracleRequest, service: OracleService = Depends(get_service)
) -> OracleResponse:
    """Answer each question about activations (n_positions, d_model) captured elsewhere."""
    service.check_model(body.model)
    limits = service.limits
    limits.chars(body.questions)
    limits.questions(body.questions)
    options = body.answer_options(limits.max_new_tokens)
    limits.new_tokens(options["max_new_tokens"])
    acts_PD = decode_activations(body.activations, service.engine.d_model, limits.max_tokens)
    layer = service.check_layer(body.layer)
    async with service.admit("query"):
        answers = await service.answer(
            [AnswerRequest(acts_PD, q, layer, **options) for q in body.questions]
        )
    prompt_tokens = sum(a.prompt_tokens for a in answers)
    completion = sum(a.completion_tokens for a in answers)
    return OracleResponse(
        model=service.oracle_id,
        answers=[
            AnswerOut(question=q, answer=a.text, p_yes=a.p_yes)
            for q, a in zip(body.questions, answers, strict=True)
        ],
        layer=layer,
        usage=Usage(
            target_tokens=0,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            total_tokens=prompt_tokens + completion,
        ),
    )
