"""``POST /v1/chat/completions``: OpenAI's chat completions, answered by the target, with the
oracle's reading of the reply (``oracle``) and steering (``steer``) as extensions.

The work is :class:`serving.chat.ChatService`'s; errors come in OpenAI's shape
(:mod:`serving.chat_errors`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from serving.chat import ChatService, sse_events
from serving.chat_errors import OpenAIRoute
from serving.chat_schemas import ChatCompletion, ChatCompletionRequest
from serving.routers import get_service
from serving.routers.query import ERRORS
from serving.routers.steer import get_steering
from serving.service import OracleService

router = APIRouter(tags=["openai"], route_class=OpenAIRoute)
CHAT_ERRORS = {
    **{k: v for k, v in ERRORS.items() if k != 422},
    400: {"description": "bad input, invalid fields included (OpenAI's error shape)"},
    200: {
        "description": "the completion; with `stream`, server-sent chunks ending in [DONE]",
        "content": {"text/event-stream": {}},
    },
}


def get_chat(
    request: Request, service: OracleService = Depends(get_service), steering=Depends(get_steering)
) -> ChatService:
    """The app's chat service (one per app, made on first use)."""
    state = request.app.state
    chat = getattr(state, "chat", None)
    if chat is None or chat.service is not service:
        chat = state.chat = ChatService(service)
    chat.steering_jobs = steering.jobs  # the /v1/steer jobs a completion may name
    return chat


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    response_model_exclude_none=False,
    responses=CHAT_ERRORS,
    summary="OpenAI chat completions, with the oracle's reading of the reply",
)
async def chat_completions(body: ChatCompletionRequest, chat: ChatService = Depends(get_chat)):
    """The target's reply to ``messages`` (OpenAI's schema). Extensions: ``oracle`` (questions
    about the target's activations over the conversation and its reply; the answers come in
    the response's ``oracle`` field, in the last chunk when streaming) and ``steer`` (a
    steering vector, inline or a ``/v1/steer`` job's id, added while the target writes)."""
    if not body.stream:
        return await chat.complete(body)
    job = await chat.start(body)  # a refusal is still a plain HTTP error here
    return StreamingResponse(
        sse_events(job),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
