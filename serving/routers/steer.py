"""``POST /v1/generate`` (the target's reply, optionally steered) and ``POST /v1/steer`` (compute
a steering vector through the oracle; ``GET /v1/steer/{job_id}`` for one run as a job).

Both need the ``hf`` engine (steering backpropagates through transformers). They run on the
engine's thread, alone (``service.call``), so that no query shares a batch with a steering run.
A steering run of at most ``MAX_SYNC_STEPS`` steps answers at once; a longer one (up to
``MAX_STEPS``), or one asked with ``"background": true``, answers 202 with a job to poll. A job
runs in chunks of ``CHUNK_STEPS`` steps, each its own engine call, so that queries go on
between chunks; one job runs at a time (another gets 429).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import Literal

import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oracle.errors import OracleInputError
from serving.errors import NotFound, ServiceError
from serving.routers import get_service
from serving.routers.query import ERRORS
from serving.schemas import MAX_TEXT, MIN_TEMPERATURE, EncodedTensor, effective_temperature
from serving.service import OracleService
from serving.tensors import encode_tensor

log = logging.getLogger(__name__)
router = APIRouter(tags=["steering"])

MAX_PROMPTS = 64
MAX_SYNC_STEPS = 20
MAX_STEPS = 500
MAX_REPLY_TOKENS = 128
CHUNK_STEPS = 5
MAX_JOBS = 32  # jobs kept in memory (finished ones are dropped oldest first)


class TooManyJobs(ServiceError):
    status_code = 429
    error_type = "too_many_jobs"


class SteeringIn(BaseModel):
    """A steering vector to add to the target's residual stream while it generates."""

    model_config = ConfigDict(extra="forbid")
    vector: list[float] | EncodedTensor = Field(
        description="(d_model,) as a list of numbers or an encoded tensor"
    )
    layer: int = Field(description="block whose output the vector is added to (0-based)")
    scale: float = Field(default=1.0, description="multiplier of the vector; finite")
    apply: Literal["all", "reply", "first"] = Field(
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


class GenerateRequest(BaseModel):
    """User messages for the target (one reply each), with an optional steering vector."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = Field(
        min_length=1, max_length=MAX_PROMPTS, description="user messages, one reply each"
    )
    steering: SteeringIn | None = Field(default=None, description="optional steering vector")
    max_tokens: int = Field(default=64, ge=1, description="longest reply, in tokens")
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description=f"0 = greedy; below {MIN_TEMPERATURE} also greedy (sampling would overflow)",
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="sampling seed")

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            if not text.strip():
                raise ValueError(f"prompt {i} is empty")
            if len(text) > MAX_TEXT:
                raise ValueError(f"prompt {i} is longer than {MAX_TEXT} characters")
        return value


class GenerateResponse(BaseModel):
    replies: list[str] = Field(description="the target's reply to each prompt, in order")
    steered: bool = Field(description="whether a steering vector was applied")


class SteerRequest(BaseModel):
    """Optimise a steering vector so that the oracle answers ``answer`` to ``question``."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = Field(
        min_length=1, max_length=MAX_PROMPTS, description="target prompts (user messages)"
    )
    question: str = Field(min_length=1, max_length=2000, description="question for the oracle")
    answer: str = Field(min_length=1, max_length=2000, description="the desired answer")
    layer: int | None = Field(default=None, description="steering block (default: read - 1)")
    read_layer: int | None = Field(default=None, description="block the oracle reads")
    read: Literal["prompt", "reply"] = Field(
        default="reply",
        description="what the oracle reads: the target's own reply to each prompt (generated "
        "unsteered, greedy) or the prompt's tokens",
    )
    reply_tokens: int = Field(
        default=32, ge=1, le=MAX_REPLY_TOKENS, description="longest reply for read='reply'"
    )
    apply: Literal["all", "reply", "first"] = Field(
        default="all",
        description="where the vector is added while optimised: every position ('all'), the "
        "reply only (from the prompt's last position on: 'reply'), or that position alone "
        "('first'); 'reply' and 'first' need read='reply'",
    )
    steps: int = Field(default=30, ge=1, le=MAX_STEPS, description="optimisation steps")
    lr: float = Field(default=0.05, gt=0.0, le=10.0, description="learning rate (see the CLI)")
    batch_size: int = Field(default=8, ge=1, le=MAX_PROMPTS, description="prompts per step")
    kl_weight: float = Field(default=0.1, ge=0.0, le=1000.0, description="KL weight")
    max_norm: float | None = Field(default=None, gt=0.0, le=1000.0, description="norm bound")
    kl_prompts: list[str] | None = Field(
        default=None, max_length=MAX_PROMPTS, description="neutral prompts for the KL term"
    )
    background: bool = Field(default=False, description="run as a job (202) even if short")

    @model_validator(mode="after")
    def _apply_needs_reply(self) -> SteerRequest:
        if self.apply != "all" and self.read != "reply":
            raise ValueError(f"apply {self.apply!r} needs read 'reply'")
        return self


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
    status: Literal["queued", "running", "done", "failed"]
    steps_done: int = 0
    result: SteerResult | None = None
    error: str | None = None


def _oracle_of(engine):
    oracle = getattr(engine, "oracle", None)
    if oracle is None or not hasattr(oracle, "adapter_disabled"):
        raise OracleInputError(
            f"steering and generation need the 'hf' engine; this server runs {engine.name!r}"
        )
    return oracle


def _vector_of(steering: SteeringIn, d_model: int) -> torch.Tensor:
    if isinstance(steering.vector, list):
        vector = torch.tensor(steering.vector, dtype=torch.float32)
    else:
        from serving.tensors import decode_activations

        encoded = steering.vector
        shape = [1, *encoded.shape] if len(encoded.shape) == 1 else encoded.shape
        vector = decode_activations(encoded.model_copy(update={"shape": shape}), d_model, 1)[0]
    if vector.ndim != 1 or vector.shape[0] != d_model:
        raise OracleInputError(
            f"steering.vector has {vector.numel()} numbers, but the target's d_model is {d_model}"
        )
    return vector


def _check_lengths(ao, prompts: list[str], limit: int) -> None:
    from oracle.steering_generate import prompt_ids

    for i, ids in enumerate(prompt_ids(ao.tokenizer, prompts)):
        if len(ids) > limit:
            raise OracleInputError(
                f"prompt {i} is {len(ids)} tokens, more than the server's limit of {limit}"
            )


@router.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS)
async def generate_route(
    body: GenerateRequest, service: OracleService = Depends(get_service)
) -> GenerateResponse:
    """The target's reply to each prompt (oracle adapter off), with the vector added at every
    position of block ``steering.layer`` when ``steering`` is given."""
    from oracle.steering_generate import generate

    if body.max_tokens > service.settings.max_new_tokens:
        raise OracleInputError(
            f"max_tokens {body.max_tokens} exceeds the server's limit of "
            f"{service.settings.max_new_tokens}"
        )
    ao = _oracle_of(service.engine)
    vector = _vector_of(body.steering, ao.d_model) if body.steering else None
    _check_lengths(ao, body.prompts, service.settings.max_tokens)

    def run(_engine) -> list[str]:
        return generate(
            ao,
            body.prompts,
            vector,
            body.steering.layer if body.steering else None,
            body.steering.scale if body.steering else 1.0,
            max_new_tokens=body.max_tokens,
            temperature=effective_temperature(body.temperature),
            top_p=body.top_p,
            seed=body.seed,
            apply=body.steering.apply if body.steering else "all",
        )

    async with service.admit():
        replies = await service.call(run)
    return GenerateResponse(replies=replies, steered=vector is not None)


def _jobs(request: Request) -> dict[str, SteerJob]:
    state = request.app.state
    if not hasattr(state, "steer_jobs"):
        state.steer_jobs = {}
    return state.steer_jobs


def _start(ao, body: SteerRequest):
    from oracle.steering import SteerConfig, SteeringRun

    cfg = SteerConfig(
        question=body.question,
        answer=body.answer,
        layer=body.layer,
        read_layer=body.read_layer,
        read=body.read,
        reply_tokens=body.reply_tokens,
        apply=body.apply,
        steps=body.steps,
        lr=body.lr,
        batch_size=body.batch_size,
        kl_weight=body.kl_weight,
        max_norm=body.max_norm,
    )
    return SteeringRun(ao, body.prompts, cfg, kl_prompts=body.kl_prompts)


def _advance(run, n_steps: int):
    for _ in range(n_steps):
        if run.finished:
            break
        run.step()
    return run


def _result_of(run) -> SteerResult:
    result = run.result()
    return SteerResult(
        vector=encode_tensor(result.vector),
        layer=result.layer,
        read_layer=result.read_layer,
        apply=result.config.apply,
        norm=float(result.vector.norm()),
        losses=result.losses,
        answer_nll=result.answer_nll,
        kl=result.kl,
    )


@router.post(
    "/v1/steer",
    response_model=SteerResult | SteerJob,
    responses={
        **ERRORS,
        202: {"description": "a job was started; poll /v1/steer/{job_id}"},
        429: {"description": "a steering job is already running"},
    },
)
async def steer_route(
    body: SteerRequest, request: Request, service: OracleService = Depends(get_service)
):
    """Compute a steering vector: short runs answer with the vector, long ones (or
    ``background``) with 202 and a job id."""
    from oracle.steering import SteerConfig, resolve_layers

    ao = _oracle_of(service.engine)
    # validate before queueing, so that a bad request fails at once with its reason
    SteerConfig(question=body.question, answer=body.answer, steps=body.steps)
    resolve_layers(ao, body.layer, body.read_layer)
    for i, text in enumerate(body.prompts + (body.kl_prompts or [])):
        if not text.strip():
            raise OracleInputError(f"prompt {i} is empty")
    _check_lengths(ao, body.prompts + (body.kl_prompts or []), service.settings.max_tokens)
    if not body.background and body.steps <= MAX_SYNC_STEPS:
        async with service.admit():
            run = await service.call(lambda _engine: _advance(_start(ao, body), body.steps))
            return _result_of(run)
    jobs = _jobs(request)
    if any(j.status in ("queued", "running") for j in jobs.values()):
        raise TooManyJobs("a steering job is already running; poll it, then retry")
    if len(jobs) >= MAX_JOBS:
        jobs.pop(next(iter(jobs)))
    job = SteerJob(job_id=uuid.uuid4().hex, status="queued")
    jobs[job.job_id] = job

    async def work() -> None:
        job.status = "running"
        try:
            run = await service.call(lambda _engine: _start(ao, body))
            while not run.finished:
                await service.call(lambda _engine: _advance(run, CHUNK_STEPS))
                job.steps_done = len(run.losses)
            job.result = _result_of(run)
            job.status = "done"
        except Exception as exc:  # the job reports any failure to its poller
            log.warning("steering job %s failed: %s", job.job_id, exc)
            job.error = str(exc)
            job.status = "failed"

    job_task = asyncio.get_running_loop().create_task(work())
    request.app.state.steer_tasks = getattr(request.app.state, "steer_tasks", set())
    request.app.state.steer_tasks.add(job_task)
    job_task.add_done_callback(request.app.state.steer_tasks.discard)
    return JSONResponse(job.model_dump(), status_code=202)


@router.get("/v1/steer/{job_id}", response_model=SteerJob, responses=ERRORS)
async def steer_job(job_id: str, request: Request) -> SteerJob:
    """The state of a steering job, with its vector once done."""
    job = _jobs(request).get(job_id)
    if job is None:
        raise NotFound(f"no steering job {job_id!r}")
    return job
