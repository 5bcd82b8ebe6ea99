"""Request and response bodies of ``/v1/generate`` and ``/v1/steer``.

``SteerRequest`` is generated from :class:`oracle.steering.config.SteerConfig` (its fields,
defaults, help and bounds; the server adds its own caps), so that the HTTP API, the library and
``oracle steer`` share one definition of every steering setting.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oracle.steering.apply import APPLIES
from oracle.steering.config import SteerConfig
from serving.config_models import request_model
from serving.schemas import MAX_TEXT, EncodedTensor, Sampling, texts

MAX_PROMPTS = 64
MAX_STEPS = 500
MAX_REPLY_TOKENS = 128
MAX_QUESTION = 2000
Prompts = texts("prompt", MAX_PROMPTS, MAX_TEXT, "user messages for the target, one reply each")


class SteeringIn(BaseModel):
    """A steering vector to add to the target's residual stream while it generates."""

    model_config = ConfigDict(extra="forbid")
    vector: list[float] | EncodedTensor = Field(
        description="(d_model,) as a list of numbers or an encoded tensor"
    )
    layer: int = Field(description="block whose output the vector is added to (0-based)")
    scale: float = Field(default=1.0, description="multiplier of the vector; finite")
    apply: Literal[APPLIES] = Field(  # type: ignore[valid-type]
        default="all",
        description="where the vector is added: every position ('all'), the reply only (from "
        "the prompt's last position on: 'reply'), or the prompt's last position alone, where the "
        "reply starts ('first'), as `apply` of the steering that made it",
    )

    @field_validator("scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("scale must be a finite number")
        return value


class GenerateRequest(Sampling):
    """User messages for the target (one reply each), with an optional steering vector."""

    model_config = ConfigDict(extra="forbid")
    prompts: Prompts  # type: ignore[valid-type]
    steering: SteeringIn | None = Field(default=None, description="optional steering vector")
    max_tokens: int = Field(default=64, ge=1, description="longest reply, in tokens")


class GenerateResponse(BaseModel):
    replies: list[str] = Field(description="the target's reply to each prompt, in order")
    steered: bool = Field(description="whether a steering vector was applied")


class _SteerChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _apply_needs_reply(self):
        apply = getattr(self, "apply", None)
        if apply not in (None, "all") and self.read != "reply":
            raise ValueError(f"apply {apply!r} needs read 'reply'")
        return self


SteerRequest = request_model(
    SteerConfig,
    "SteerRequest",
    # HTTP serves the vector method, read at its default positions: its result is a vector
    exclude=("method", "lora_r", "lora_alpha", "positions"),
    caps={
        "question": {"min_length": 1, "max_length": MAX_QUESTION},
        "answer": {"min_length": 1, "max_length": MAX_QUESTION},
        "reply_tokens": {"le": MAX_REPLY_TOKENS},
        "steps": {"le": MAX_STEPS},
        "lr": {"gt": 0.0, "le": 10.0},
        "batch_size": {"le": MAX_PROMPTS},
        "kl_weight": {"le": 1000.0},
        "max_norm": {"le": 1000.0},
    },
    extra={
        "prompts": (Prompts, ...),
        "kl_prompts": (
            Prompts | None,
            Field(default=None, description="neutral prompts for the KL term (default: prompts)"),
        ),
        "background": (
            bool,
            Field(default=False, description="run as a job (202) even if short"),
        ),
    },
    doc="Optimise a steering vector so that the oracle answers ``answer`` to ``question``.",
    base=_SteerChecks,
)


class SteerResult(BaseModel):
    vector: EncodedTensor = Field(description="the steering vector, shape (d_model,)")
    layer: int
    read_layer: int
    scale: float = 1.0
    apply: str = Field(default="all", description="where to add it: pass as steering.apply")
    norm: float
    losses: list[float] = Field(description="total loss per step")
    answer_nll: list[float] = Field(description="oracle answer NLL per step")
    kl: list[float] = Field(description="KL term per step")


class SteerJob(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    steps_done: int = 0
    result: SteerResult | None = None
    error: str | None = None
