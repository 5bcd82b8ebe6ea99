"""Request and response bodies of ``/v1/generate`` and ``/v1/steer``.

``SteerRequest`` is generated from :class:`oracle.steering.config.SteerConfig` (its fields,
defaults, help and bounds; the server adds its own caps), so that the HTTP API, the library and
``oracle steer`` share one definition of every steering setting.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oracle.fields import describe
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
    """A steering vector to add to the target's residual stream while it generates: a finished
    ``/v1/steer`` job's by its id (then its layer, and the scale and apply mode chosen for it,
    unless given), or one given inline."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=200, description="a finished /v1/steer job")
    vector: list[float] | EncodedTensor | None = Field(
        default=None, description="(d_model,) as a list of numbers or an encoded tensor"
    )
    layer: int | None = Field(
        default=None,
        description="block whose output the vector is added to (0-based; default: the job's)",
    )
    scale: float | None = Field(
        default=None, description="multiplier of the vector; finite (default: the job's, else 1)"
    )
    apply: Literal[APPLIES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="where the vector is added: every position ('all'), the reply only (from "
        "the prompt's last position on: 'reply'), or the prompt's last position alone, where the "
        "reply starts ('first'); default: the job's, else 'all'",
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


_HELP = {info.name: info.help for info in describe(SteerConfig)}
SteerRequest = request_model(
    SteerConfig,
    "SteerRequest",
    # HTTP serves the vector method, read at its default positions: its result is a vector
    exclude=("method", "lora_r", "lora_alpha", "positions", "persona_prompt"),
    caps={
        "reply_tokens": {"le": MAX_REPLY_TOKENS},
        "steps": {"le": MAX_STEPS},
        "lr": {"gt": 0.0, "le": 10.0},
        "batch_size": {"le": MAX_PROMPTS},
        "kl_weight": {"le": 1000.0},
        "max_norm": {"le": 1000.0},
    },
    extra={
        # required here: HTTP serves the vector method, which the oracle's answer drives
        "question": (
            str,
            Field(..., min_length=1, max_length=MAX_QUESTION, description=_HELP["question"]),
        ),
        "answer": (
            str,
            Field(..., min_length=1, max_length=MAX_QUESTION, description=_HELP["answer"]),
        ),
        "prompts": (Prompts, ...),
        "val_prompts": (
            Prompts | None,
            Field(
                default=None,
                description="prompts the apply mode and scale are chosen on (default: the last "
                "quarter of prompts, held out of the optimisation)",
            ),
        ),
        "choose": (
            bool,
            Field(default=True, description="choose the apply mode and scale (else: scale 1)"),
        ),
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
    scale: float = Field(default=1.0, description="the scale to use it at (chosen, see choice)")
    apply: str = Field(default="all", description="where to add it: pass as steering.apply")
    choice: dict | None = Field(
        default=None,
        description="how scale and apply were chosen on validation prompts: every (apply, "
        "scale) tried, its effect and perplexity ratio",
    )
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
