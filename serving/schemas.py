"""Pydantic request and response bodies of the HTTP API (the OpenAPI schema comes from here)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

Role = Literal["system", "user", "assistant"]
MAX_TEXT = 100_000
MAX_QUESTION = 2_000
MIN_TEMPERATURE = 0.01


def effective_temperature(temperature: float) -> float:
    """The temperature a request samples at: below ``MIN_TEMPERATURE`` sampling overflows, so
    such a temperature means greedy (0)."""
    return temperature if temperature >= MIN_TEMPERATURE else 0.0


def texts(what: str, max_items: int, max_chars: int, description: str) -> object:
    """The type of a list field of non-blank strings (at least one, at most ``max_items``),
    each at most ``max_chars`` long; an error names the item (``question 2 is empty``)."""

    def check(value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            if not text.strip():
                raise ValueError(f"{what} {i} is empty")
            if len(text) > max_chars:
                raise ValueError(f"{what} {i} is longer than {max_chars} characters")
        return value

    item_schema = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S"}
    return Annotated[
        list[str],
        AfterValidator(check),
        Field(
            min_length=1,
            max_length=max_items,
            description=description,
            # stated in the schema too; the validator's message names the item
            json_schema_extra={"items": item_schema},
        ),
    ]


# Exactly one of messages / prompt, stated in the schema too so that clients and fuzzers see it.
ONE_INPUT = {"oneOf": [{"required": ["messages"]}, {"required": ["prompt"]}]}
POSITIONS_PATTERN = (
    r"^(all|non_system|last:[1-9][0-9]{0,5}|role:(system|user|assistant)"
    r"|indices:-?[0-9]{1,6}(,-?[0-9]{1,6})*)$"
)
POSITIONS_HELP = (
    "positions to read: all | last:K | role:ROLE | non_system | indices:I,J "
    "(default: the oracle's, every token outside the system prompt)"
)


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(extra="forbid")
    role: Role = Field(description="system, user or assistant")
    content: str = Field(max_length=MAX_TEXT, description="the turn's text")


class TargetInputModel(BaseModel):
    """What the target reads: chat ``messages`` or a plain ``prompt`` (exactly one)."""

    # SkipJsonSchema: the schema says "send one or the other", not "send null".
    messages: (
        Annotated[list[Message], Field(min_length=1, max_length=256)] | SkipJsonSchema[None]
    ) = Field(default=None, description="chat turns for the target")
    prompt: Annotated[str, Field(max_length=MAX_TEXT)] | SkipJsonSchema[None] = Field(
        default=None,
        description="plain text instead of messages",
        json_schema_extra={"pattern": r"\S"},
    )
    add_generation_prompt: bool = Field(
        default=False, description="end the chat with the assistant's header"
    )
    model: str | None = Field(
        default=None, description="served model name (see /v1/models); 404 if another"
    )

    @model_validator(mode="after")
    def _one_input(self):
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("prompt is empty")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("messages is empty")
            if not any(m.content.strip() for m in self.messages):
                raise ValueError("every message in 'messages' is empty")
        return self


class Sampling(BaseModel):
    """How a model samples: the fields of every request that generates text."""

    temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description=f"0 = greedy; below {MIN_TEMPERATURE} also greedy (sampling would overflow)",
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="sampling seed")


class SamplingOptions(Sampling):
    """How the oracle decodes its answers."""

    max_tokens: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None,
        description="longest answer, in tokens (default 32, or the server's limit if lower)",
    )
    yes_no: bool = Field(default=False, description="also return P(yes) for each question")

    def answer_options(self, limit: int) -> dict:
        """The fields of :class:`~oracle.engines.AnswerRequest` these options set; ``limit``
        is the server's longest answer (the default is capped by it, a larger ask is refused)."""
        return dict(
            max_new_tokens=self.max_tokens if self.max_tokens is not None else min(32, limit),
            temperature=effective_temperature(self.temperature),
            top_p=self.top_p,
            seed=self.seed,
            yes_no=self.yes_no,
        )


QuestionList = texts("question", 64, MAX_QUESTION, "questions for the oracle, answered in order")


class Questions(BaseModel):
    questions: QuestionList  # type: ignore[valid-type]


class QueryRequest(TargetInputModel, Questions, SamplingOptions):
    """A conversation for the target and questions for the oracle about it."""

    model_config = ConfigDict(
        json_schema_extra={
            **ONE_INPUT,
            "examples": [
                {
                    "messages": [
                        {"role": "system", "content": "You are a pirate."},
                        {"role": "user", "content": "How are you today?"},
                    ],
                    "questions": ["What persona is the assistant playing?"],
                    "max_tokens": 16,
                    "temperature": 0.0,
                }
            ],
        }
    )
    layer: int | None = Field(
        default=None, description="target block to read (default: the oracle's)"
    )
    positions: str | None = Field(
        default=None, max_length=10_000, pattern=POSITIONS_PATTERN, description=POSITIONS_HELP
    )
    per_token: bool = Field(
        default=False,
        description="with yes_no: P(yes) of the first question about each read token alone",
    )


class AnswerOut(BaseModel):
    question: str
    answer: str
    p_yes: float | None = Field(default=None, description="P(yes) when yes_no was asked")


class TokenScore(BaseModel):
    position: int
    token: str
    p_yes: float


class Usage(BaseModel):
    target_tokens: int = Field(description="tokens the target read")
    prompt_tokens: int = Field(description="activation positions injected, over all questions")
    completion_tokens: int = Field(description="answer tokens generated")
    total_tokens: int


class QueryResponse(BaseModel):
    model: str
    answers: list[AnswerOut]
    layer: int
    positions: list[int] = Field(description="indices of the target tokens read")
    tokens_read: list[str] = Field(description="the tokens at those positions")
    tokens: list[str] = Field(description="every token of the target input")
    token_scores: list[TokenScore] | None = Field(
        default=None, description="per-token P(yes), when per_token was asked"
    )
    usage: Usage


DType = Literal["float32", "float16"]


class EncodedTensor(BaseModel):
    """A tensor as base64 of its raw little-endian bytes, in C order."""

    data: str = Field(description="base64 of the raw bytes")
    shape: list[int] = Field(min_length=1, max_length=3, description="dimensions")
    dtype: DType = Field(default="float32", description="element type")


class ActivationsRequest(TargetInputModel):
    """Capture only: read activations of the target."""

    model_config = ConfigDict(json_schema_extra=ONE_INPUT)
    layers: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="blocks to read (default: the oracle's)",
    )
    positions: str | None = Field(
        default=None, max_length=10_000, pattern=POSITIONS_PATTERN, description=POSITIONS_HELP
    )
    dtype: DType = Field(default="float32", description="element type of the returned tensor")


class ActivationsResponse(BaseModel):
    model: str
    activations: EncodedTensor = Field(description="shape (n_layers, n_positions, d_model)")
    layers: list[int]
    positions: list[int]
    tokens_read: list[str]
    tokens: list[str]


class OracleRequest(Questions, SamplingOptions):
    """Questions about activations captured elsewhere: (n_positions, d_model) or (1, n, d)."""

    activations: EncodedTensor
    layer: int | None = Field(default=None, description="block the activations were read from")
    model: str | None = Field(default=None, description="served model name; 404 if another")


class OracleResponse(BaseModel):
    model: str
    answers: list[AnswerOut]
    layer: int
    usage: Usage


class ModelCard(BaseModel):
    """A served model, in OpenAI's model shape (``id``, ``object``, ``created``, ``owned_by``)
    with this server's ``role`` and ``config``."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()), description="Unix time")
    owned_by: str = "activation-oracle"
    role: Literal["target", "oracle"]
    config: dict | None = None


class ModelsResponse(BaseModel):
    """OpenAI's model list (``object``, ``data``) with this server's details."""

    object: Literal["list"] = "list"
    engine: str
    world: str | None = Field(
        default=None, description="the named world served (toy, smol), null for other models"
    )
    data: list[ModelCard]
    d_model: int
    n_layers: int
    limits: dict


class HealthResponse(BaseModel):
    status: Literal["ok"]
    engine: str
