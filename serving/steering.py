"""The steering service: ``/v1/generate`` and ``/v1/steer`` call it; it owns the steering jobs.

Both are long work: admitted in their own lanes (``generate``, ``steer``: at most
``--max-jobs`` queued and running each, 429 beyond; ``--long-concurrency`` of each running),
and run as steps on the engine's long lane (a batch of replies, one optimisation step), so
that queries go on between steps. A request's timeout (504) or a job's cancellation stops the
work between two steps. A steering run of at most ``MAX_SYNC_STEPS`` steps answers at once; a
longer one, or one asked with ``background``, becomes a job to poll.

Jobs are kept on disk when the server has a place for them (:mod:`serving.steer_store`): at
start-up, finished jobs are served again and unfinished ones run again from their first step
(a seeded run gives the same vector), unless they were started ``MAX_ATTEMPTS`` times already.
A job's error is the message of a known problem of its input; anything else is logged and the
job says only that an internal error stopped it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import torch

from oracle.errors import OracleError, OracleInputError
from oracle.steering.config import SteerConfig
from oracle.steering.io import SteeringVector
from oracle.steering.run import SteeringRun
from serving.errors import NotFound
from serving.schemas import effective_temperature
from serving.service import OracleService
from serving.steer_schemas import (
    GenerateRequest,
    SteeringIn,
    SteerJob,
    SteerRequest,
    SteerResult,
)
from serving.steer_store import MAX_ATTEMPTS, UNFINISHED, SteerJobStore
from serving.tensors import decode_activations, encode_tensor

log = logging.getLogger(__name__)
MAX_SYNC_STEPS = 20
MAX_JOBS = 32  # jobs kept (finished ones are dropped oldest first)
INTERNAL = "an internal error stopped the run (the server's log has the detail)"


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


@dataclass
class Steering:
    """A steering vector as a request resolves it (inline, or a finished job's)."""

    vector: torch.Tensor  # (d_model,)
    layer: int
    scale: float
    apply: str


def resolve_steering(ask, jobs: dict[str, SteerJob], d_model: int, check_layer) -> Steering:
    """The vector of a request's steering (``SteeringIn`` or chat's ``SteerAsk``): a finished
    ``/v1/steer`` job's by ``id``, with the job's layer, chosen scale and apply mode wherever
    the request leaves them out (404 for an unknown job), or the inline vector (scale 1 and
    apply 'all' unless given)."""
    layer, scale, apply = ask.layer, ask.scale, ask.apply
    if ask.id is not None:
        job = jobs.get(ask.id)
        if job is None:
            raise NotFound(f"no steering job {ask.id!r}")
        if job.status != "done" or job.result is None:
            raise OracleInputError(f"steering job {ask.id!r} is {job.status}, not done")
        vector = vector_of(job.result, d_model)
        layer = job.result.layer if layer is None else layer
        scale = job.result.scale if scale is None else scale
        apply = apply or job.result.apply
    else:
        vector = vector_of(ask, d_model)
    if not torch.isfinite(vector).all():
        raise OracleInputError("the steering vector holds NaN or infinite numbers")
    return Steering(vector, check_layer(layer), 1.0 if scale is None else scale, apply or "all")


def result_of(run: SteeringRun, vec: SteeringVector | None = None) -> SteerResult:
    """The run's result; ``vec``: the vector with its chosen use (scale, apply), if chosen."""
    result = run.result()
    return SteerResult(
        vector=encode_tensor(result.vector),
        layer=result.layer,
        read_layer=result.read_layer,
        scale=vec.scale if vec is not None else 1.0,
        apply=vec.apply if vec is not None else result.config.apply,
        choice=vec.choice if vec is not None else None,
        norm=float(result.vector.norm()),
        losses=result.losses,
        answer_nll=result.answer_nll,
        kl=result.kl,
    )


class SteeringService:
    """Steered generation and steering runs over an :class:`OracleService`'s engine."""

    def __init__(self, service: OracleService, store: SteerJobStore | None = None) -> None:
        self.service = service
        self.store = store
        self.jobs: dict[str, SteerJob] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.requests: dict[str, dict] = {}  # each job's request, as stored
        self.attempts: dict[str, int] = {}
        self.stopping = False

    def _save(self, job: SteerJob) -> None:
        if self.store is None:
            return
        try:
            self.store.save(job, self.requests[job.job_id], self.attempts.get(job.job_id, 0))
        except OSError:  # the job goes on in memory; a restart loses it
            log.exception("steering job %s could not be saved", job.job_id)

    def resume(self) -> list[str]:
        """Load the stored jobs and start again the unfinished ones; returns their ids."""
        resumed: list[str] = []
        for job, request, attempts in self.store.load() if self.store is not None else []:
            key = job.job_id
            self.jobs[key], self.requests[key], self.attempts[key] = job, request, attempts
            if job.status not in UNFINISHED:
                continue
            job.steps_done, job.status = 0, "failed"
            if attempts >= MAX_ATTEMPTS:
                job.error = (
                    f"the job was started {attempts} times and the server stopped during each "
                    "run; it is not started again (the server's log may say why)"
                )
                self._save(job)
                continue
            try:
                body = SteerRequest.model_validate(request)
                config = self.config_of(body)
            except (ValueError, TypeError):
                job.error = "the stored request is not valid for this server any more"
                self._save(job)
                continue
            job.status = "queued"
            self.service.lanes["steer"].enter(force=True)  # left when the job ends
            self._launch(job, body, config)
            resumed.append(key)
        return resumed

    async def stop(self) -> None:
        """Stop the running jobs between two steps; unfinished, they run again at next start."""
        self.stopping = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def engine(self):
        return self.service.engine

    async def check_prompts(self, prompts: list[str]) -> None:
        """Each prompt's tokens within ``--max-tokens`` (counted on the preparation thread)."""
        lengths = await self.service.in_prep(self.engine.prompt_lengths, prompts)
        for i, n in enumerate(lengths):
            self.service.limits.tokens(n, f"prompt {i}")

    async def generate(self, body: GenerateRequest) -> list[str]:
        limits = self.service.limits
        limits.new_tokens(body.max_tokens)
        limits.chars(body.prompts)
        options = dict(
            max_new_tokens=body.max_tokens,
            temperature=effective_temperature(body.temperature),
            top_p=body.top_p,
            seed=body.seed,
        )
        if body.steering is not None:
            steering = resolve_steering(
                body.steering, self.jobs, self.engine.d_model, self.service.check_layer
            )
            options.update(
                vector=steering.vector,
                layer=steering.layer,
                scale=steering.scale,
                apply=steering.apply,
            )
        async with self.service.admit("generate"):
            await self.check_prompts(body.prompts)
            run = await self.service.in_prep(
                lambda: self.engine.start_generation(body.prompts, **options)
            )
            while not run.finished:
                await self.service.long_step(lambda _engine: run.step())
            return run.replies

    def config_of(self, body: SteerRequest) -> SteerConfig:
        fields = body.model_dump(
            exclude={"prompts", "kl_prompts", "val_prompts", "background", "choose"}
        )
        return SteerConfig(**fields)

    async def _run(
        self, body: SteerRequest, config: SteerConfig, job: SteerJob | None = None
    ) -> SteerResult:
        """The steering run of ``body``, step by step on the long lane: the target's replies a
        batch at a time (read 'reply'), the run's set-up, each optimisation step, then (unless
        ``choose`` is false) each candidate (apply, scale) tried on the validation prompts, as
        ``oracle steer`` chooses them (:mod:`oracle.steering.make`)."""
        from oracle.steering.choose import split_validation
        from oracle.steering.make import with_choice

        await self.check_prompts(body.prompts + (body.kl_prompts or []) + (body.val_prompts or []))
        prompts, val = (list(body.prompts), [])
        if body.choose:
            prompts, val = split_validation(body.prompts, body.val_prompts)
        replies = None
        if config.read == "reply":
            gen = await self.service.in_prep(
                lambda: self.engine.start_generation(prompts, max_new_tokens=config.reply_tokens)
            )
            while not gen.finished:
                await self.service.long_step(lambda _engine: gen.step())
            replies = gen.replies
        run = await self.service.long_step(
            lambda engine: engine.start_steering(prompts, config, body.kl_prompts, replies)
        )
        while not run.finished:
            await self.service.long_step(lambda _engine: run.step())
            if job is not None:
                job.steps_done = len(run.losses)
        if not body.choose:
            return result_of(run)
        vec = run.result().steering_vector(self.engine.config.base_model)
        chooser = await self.service.in_prep(lambda: self.engine.start_choice(vec, config, val))
        while not chooser.finished:
            await self.service.long_step(lambda _engine: chooser.step())
        return result_of(run, with_choice(vec, chooser.result()))

    async def steer(self, body: SteerRequest) -> SteerResult | SteerJob:
        """A short run's result at once; a long (or ``background``) run's queued job."""
        config = self.config_of(body)  # a bad request fails here, before anything is queued
        limits = self.service.limits
        limits.chars(body.prompts, body.kl_prompts, [config.question, config.answer])
        self.engine.steering_layers(config.layer, config.read_layer)
        if not body.background and config.steps <= MAX_SYNC_STEPS:
            async with self.service.admit("steer"):
                return await self._run(body, config)
        lane = self.service.lanes["steer"]
        lane.enter()  # 429 when the lane is full; left when the job ends
        try:
            await self.check_prompts(body.prompts + (body.kl_prompts or []))
        except BaseException:
            lane.leave()
            raise
        if len(self.jobs) >= MAX_JOBS:
            finished = [k for k, j in self.jobs.items() if j.status not in UNFINISHED]
            for key in finished[: len(self.jobs) - MAX_JOBS + 1]:
                self.jobs.pop(key)
                self.requests.pop(key, None)
                self.attempts.pop(key, None)
                if self.store is not None:
                    self.store.delete(key)
        job = SteerJob(job_id=uuid.uuid4().hex, status="queued")
        self.jobs[job.job_id] = job
        self.requests[job.job_id] = body.model_dump(mode="json")
        self.attempts[job.job_id] = 0
        self._save(job)
        self._launch(job, body, config)
        return job

    def _launch(self, job: SteerJob, body: SteerRequest, config: SteerConfig) -> None:
        task = asyncio.get_running_loop().create_task(self._work(job, body, config))
        self.tasks[job.job_id] = task

    async def _work(self, job: SteerJob, body: SteerRequest, config: SteerConfig) -> None:
        lane = self.service.lanes["steer"]
        key = job.job_id
        try:
            async with lane.turn():
                job.status = "running"
                self.attempts[key] = self.attempts.get(key, 0) + 1  # saved before any work
                self._save(job)
                job.result = await self._run(body, config, job)
            job.status = "done"
        except asyncio.CancelledError:
            if self.stopping:  # a shutdown, not a DELETE: the job runs again at next start
                if job.status == "running":
                    self.attempts[key] -= 1  # a pause is no attempt
                job.status, job.steps_done = "queued", 0
            else:
                job.status = "cancelled"
        except OracleError as exc:  # a known problem of the input: its own words
            log.warning("steering job %s failed: %s", key, exc)
            job.error, job.status = str(exc), "failed"
        except Exception:  # a bug: the detail in the log, none of it to the client
            log.exception("steering job %s failed", key)
            job.error, job.status = INTERNAL, "failed"
        finally:
            lane.leave()
            self.tasks.pop(key, None)
            self._save(job)

    def job(self, job_id: str) -> SteerJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no steering job {job_id!r}")
        return job

    def cancel(self, job_id: str) -> SteerJob:
        """Stop a queued or running job between two steps (its status becomes 'cancelled')."""
        job = self.job(job_id)
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()
            if job.status in ("queued", "running"):
                job.status = "cancelled"
        return job
