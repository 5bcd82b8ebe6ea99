"""``POST /v1/query``: a conversation for the target, questions for the oracle."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from oracle.errors import OracleInputError
from oracle.inputs import TargetInput
from serving.routers import get_service
from serving.schemas import AnswerOut, QueryRequest, QueryResponse, TokenScore, Usage
from serving.service import OracleService

router = APIRouter(tags=["oracle"])

ERRORS = {
    400: {"description": "bad input (the message names the problem)"},
    401: {"description": "missing or wrong API key"},
    404: {"description": "unknown model"},
    408: {"description": "the request body took too long to arrive"},
    413: {"description": "request body too large"},
    422: {"description": "a field fails validation"},
    429: {"description": "too many requests of this kind; retry after Retry-After seconds"},
    503: {"description": "the server is shutting down"},
    504: {"description": "request timed out"},
}


def input_texts(body) -> list[str]:
    """The texts of a request body's target input (``messages`` or ``prompt``), for the
    server's character cap."""
    if body.messages is not None:
        return [m.content for m in body.messages]
    return [body.prompt] if body.prompt is not None else []


def target_input_of(body) -> TargetInput:
    """The core's :class:`TargetInput` from a request body with ``messages`` or ``prompt``."""
    messages = [m.model_dump() for m in body.messages] if body.messages is not None else None
    return TargetInput(
        prompt=body.prompt, messages=messages, add_generation_prompt=body.add_generation_prompt
    )


@router.post("/v1/query", response_model=QueryResponse, responses=ERRORS)
async def query(body: QueryRequest, service: OracleService = Depends(get_service)) -> QueryResponse:
    """Read the target's activations on the conversation and answer each question about them.

    Default read: the oracle's layer, every token outside the system prompt.
    """
    service.check_model(body.model)
    if body.per_token and not body.yes_no:
        raise OracleInputError("per_token needs yes_no: it scores P(yes) per token")
    limits = service.limits
    limits.chars(input_texts(body), body.questions)
    limits.questions(body.questions)
    options = body.answer_options(limits.max_new_tokens)
    limits.new_tokens(options["max_new_tokens"])
    async with service.admit("query"):
        request = service.engine.capture_request(target_input_of(body), body.layer, body.positions)
        result = await service.query(request, body.questions, options, per_token=body.per_token)
    cap = result.capture
    prompt_tokens = sum(a.prompt_tokens for a in result.answers)
    completion = sum(a.completion_tokens for a in result.answers)
    scores = None
    if result.token_scores is not None:
        scores = [
            TokenScore(position=p, token=cap.tokens[p], p_yes=s) for p, s in result.token_scores
        ]
    return QueryResponse(
        model=service.oracle_id,
        answers=[
            AnswerOut(question=q, answer=a.text, p_yes=a.p_yes)
            for q, a in zip(body.questions, result.answers, strict=True)
        ],
        layer=result.layer,
        positions=cap.positions,
        tokens_read=cap.read_tokens,
        tokens=cap.tokens,
        token_scores=scores,
        usage=Usage(
            target_tokens=len(cap.token_ids),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            total_tokens=len(cap.token_ids) + prompt_tokens + completion,
        ),
    )
