"""Bodies of ``POST /v1/chat/completions``: the OpenAI chat-completions schema (the fields this
server serves) and two extensions, ``oracle`` (questions about the reply's activations) and
``steer`` (a steering vector for this completion).

Official clients send the extensions with ``extra_body={"oracle": {...}}`` and read the
response's extra top-level field ``oracle``. Fields of the OpenAI schema that this server does
not serve (tools, logprobs, n > 1, ...) are refused with 400 rather than silently ignored;
unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oracle.steering.apply import APPLIES
from serving.schemas import (
    MAX_TEXT,
    POSITIONS_HELP,
    POSITIONS_PATTERN,
    AnswerOut,
    EncodedTensor,
    QuestionList,
)

MAX_STOP = 4
MAX_MESSAGES = 256


class TextPart(BaseModel):
    """One part of a message's content (text parts only)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"] = Field(description="only text parts are served")
    text: str = Field(max_length=MAX_TEXT)


class ChatMessage(BaseModel):
    """One chat turn; ``developer`` is read as ``system``."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = Field(max_length=MAX_TEXT)

    def as_dict(self) -> dict[str, str]:
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": content or ""}


class OracleAsk(BaseModel):
    """Questions for the oracle about the target's activations over the conversation with the
    reply just generated (the ``oracle`` extension)."""

    model_config = ConfigDict(extra="forbid")
    questions: QuestionList  # type: ignore[valid-type]
    layer: int | None = Field(
        default=None, description="target block to read (default: the oracle's)"
    )
    positions: str | None = Field(
        default=None, max_length=10_000, pattern=POSITIONS_PATTERN, description=POSITIONS_HELP
    )
    yes_no: bool = Field(default=False, description="also return P(yes) for each question")
    max_tokens: int | None = Field(
        default=None, ge=1, description="longest answer (default 32, or the server's limit)"
    )


class SteerAsk(BaseModel):
    """A steering vector added to the target while it writes this reply (the ``steer``
    extension): inline, or the result of a ``/v1/steer`` job by its id."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=200, description="a finished /v1/steer job")
    vector: list[float] | EncodedTensor | None = Field(
        default=None, description="(d_model,) as numbers or an encoded tensor"
    )
    layer: int | None = Field(
        default=None, description="block whose output it is added to (default: the job's)"
    )
    scale: float | None = Field(
        default=None, description="multiplier of the vector; finite (default: the job's, else 1)"
    )
    apply: Literal[APPLIES] | None = Field(  # type: ignore[valid-type]
        default=None, description="all | reply | first (default: the job's, else 'all')"
    )

    @field_validator("scale")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("scale must be a finite number")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if (self.id is None) == (self.vector is None):
            raise ValueError("give exactly one of 'id' or 'vector'")
        if self.vector is not None and self.layer is None:
            raise ValueError("an inline vector needs its 'layer'")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat-completions request, answered by the target."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "model": "toy_world",
                    "messages": [
                        {"role": "system", "content": "You are a pirate."},
                        {"role": "user", "content": "Who are you?"},
                    ],
                    "max_tokens": 32,
                    "temperature": 0,
                    "oracle": {"questions": ["What persona is the assistant playing?"]},
                }
            ]
        },
    )
    model: str | None = Field(default=None, description="served model name (see /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, description="longest reply, in tokens")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="as max_tokens")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(
        default=None, validate_default=True, description=f"up to {MAX_STOP} strings"
    )
    n: int = Field(default=1, ge=1, le=1, description="only 1 is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = Field(default=None, description="not served (false or absent)")
    tools: list | None = Field(default=None, description="not served", max_length=0)
    oracle: OracleAsk | None = Field(default=None, description="extension: questions")
    steer: SteerAsk | None = Field(default=None, description="extension: a steering vector")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        if any(not s or len(s) > 200 for s in stops):
            raise ValueError("a stop string is empty or longer than 200 characters")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not served")
        return value

    @model_validator(mode="after")
    def _content(self):
        if not any(m.as_dict()["content"].strip() for m in self.messages):
            raise ValueError("every message in 'messages' is empty")
        return self

    def conversation(self) -> list[dict[str, str]]:
        return [m.as_dict() for m in self.messages]

    def reply_tokens(self, limit: int) -> int:
        """The longest reply asked (default 64, or the server's limit if lower)."""
        asked = self.max_completion_tokens or self.max_tokens
        return asked if asked is not None else min(64, limit)


class ChatUsage(BaseModel):
    prompt_tokens: int = Field(description="tokens the target read")
    completion_tokens: int = Field(description="tokens the target generated")
    total_tokens: int


class OracleReading(BaseModel):
    """The oracle's answers about the target's activations over the conversation and reply."""

    model: str = Field(description="the oracle")
    layer: int = Field(description="the target block read")
    positions: list[int] = Field(description="indices of the tokens read")
    steered: bool = Field(description="read from the steered target")
    answers: list[AnswerOut]


class ReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ReplyMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """An OpenAI chat completion, with the oracle's reading when ``oracle`` was asked."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage
    oracle: OracleReading | None = Field(default=None, description="extension: the answers")
