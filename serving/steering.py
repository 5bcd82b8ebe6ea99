"""The steering service: ``/v1/generate`` and ``/v1/steer`` call it; it owns the steering jobs.

Both run on the engine's thread, alone (``OracleService.call``), so that no query shares a
batch with a steering run. A steering run of at most ``MAX_SYNC_STEPS`` steps answers at once;
a longer one (up to the request's cap), or one asked with ``background``, becomes a job to poll.
A job runs in chunks of ``CHUNK_STEPS`` steps, each its own engine call, so that queries go on
between chunks; one job runs at a time (another gets 429).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import torch

from oracle.errors import OracleInputError
from oracle.steering.config import SteerConfig
from oracle.steering.run import SteeringRun
from serving.errors import NotFound, ServiceError
from serving.schemas import effective_temperature
from serving.service import OracleService
from serving.steer_schemas import (
    GenerateRequest,
    SteeringIn,
    SteerJob,
    SteerRequest,
    SteerResult,
)
from serving.tensors import decode_activations, encode_tensor

log = logging.getLogger(__name__)
MAX_SYNC_STEPS = 20
CHUNK_STEPS = 5
MAX_JOBS = 32  # jobs kept in memory (finished ones are dropped oldest first)


class TooManyJobs(ServiceError):
    status_code = 429
    error_type = "too_many_jobs"


def vector_of(steering: SteeringIn, d_model: int) -> torch.Tensor:
    """The request's steering vector as a (d_model,) tensor."""
    if isinstance(steering.vector, list):
        vector = torch.tensor(steering.vector, dtype=torch.float32)
    else:
        encoded = steering.vector
        shape = [1, *encoded.shape] if len(encoded.shape) == 1 else encoded.shape
        vector = decode_activations(encoded.model_copy(update={"shape": shape}), d_model, 1)[0]
    if vector.ndim != 1 or vector.shape[0] != d_model:
        raise OracleInputError(
            f"steering.vector has {vector.numel()} numbers, but the target's d_model is {d_model}"
        )
    return vector


def result_of(run: SteeringRun) -> SteerResult:
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


def advance(run: SteeringRun, n_steps: int) -> SteeringRun:
    for _ in range(n_steps):
        if run.finished:
            break
        run.step()
    return run


class SteeringService:
    """Steered generation and steering runs over an :class:`OracleService`'s engine."""

    def __init__(self, service: OracleService) -> None:
        self.service = service
        self.jobs: dict[str, SteerJob] = {}
        self.tasks: set[asyncio.Task] = set()

    @property
    def engine(self):
        return self.service.engine

    def check_prompts(self, prompts: list[str]) -> None:
        limit = self.service.settings.max_tokens
        for i, n in enumerate(self.engine.prompt_lengths(prompts)):
            if n > limit:
                raise OracleInputError(
                    f"prompt {i} is {n} tokens, more than the server's limit of {limit}"
                )

    async def generate(self, body: GenerateRequest) -> list[str]:
        limit = self.service.settings.max_new_tokens
        if body.max_tokens > limit:
            raise OracleInputError(
                f"max_tokens {body.max_tokens} exceeds the server's limit of {limit}"
            )
        steering = body.steering
        vector = vector_of(steering, self.engine.d_model) if steering else None
        self.check_prompts(body.prompts)
        options = dict(
            max_new_tokens=body.max_tokens,
            temperature=effective_temperature(body.temperature),
            top_p=body.top_p,
            seed=body.seed,
        )
        if steering is not None:
            options.update(
                vector=vector, layer=steering.layer, scale=steering.scale, apply=steering.apply
            )
        async with self.service.admit():
            return await self.service.call(lambda engine: engine.generate(body.prompts, **options))

    def config_of(self, body: SteerRequest) -> SteerConfig:
        fields = body.model_dump(exclude={"prompts", "kl_prompts", "background"})
        return SteerConfig(**fields)

    async def steer(self, body: SteerRequest) -> SteerResult | SteerJob:
        """A short run's result at once; a long (or ``background``) run's queued job."""
        config = self.config_of(body)  # a bad request fails here, before anything is queued
        self.engine.steering_layers(config.layer, config.read_layer)
        self.check_prompts(body.prompts + (body.kl_prompts or []))

        def start(engine) -> SteeringRun:
            return engine.start_steering(body.prompts, config, body.kl_prompts)

        if not body.background and config.steps <= MAX_SYNC_STEPS:
            async with self.service.admit():
                run = await self.service.call(lambda engine: advance(start(engine), config.steps))
                return result_of(run)
        if any(j.status in ("queued", "running") for j in self.jobs.values()):
            raise TooManyJobs("a steering job is already running; poll it, then retry")
        if len(self.jobs) >= MAX_JOBS:
            self.jobs.pop(next(iter(self.jobs)))
        job = SteerJob(job_id=uuid.uuid4().hex, status="queued")
        self.jobs[job.job_id] = job
        task = asyncio.get_running_loop().create_task(self._work(job, start))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job

    async def _work(self, job: SteerJob, start) -> None:
        job.status = "running"
        try:
            run = await self.service.call(start)
            while not run.finished:
                await self.service.call(lambda _engine: advance(run, CHUNK_STEPS))
                job.steps_done = len(run.losses)
            job.result = result_of(run)
            job.status = "done"
        except Exception as exc:  # the job reports any failure to its poller
            log.warning("steering job %s failed: %s", job.job_id, exc)
            job.error = str(exc)
            job.status = "failed"

    def job(self, job_id: str) -> SteerJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no steering job {job_id!r}")
        return job
