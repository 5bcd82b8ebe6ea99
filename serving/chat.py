"""The chat-completions service: the target's reply to a conversation, optionally steered,
then the oracle's reading of the target's activations over the conversation and that reply.

A completion is interactive work: admitted in the ``query`` lane (429 with Retry-After when
full, 504 after ``--timeout``), its conversation tokenised and checked on the preparation
thread. Replies of concurrent completions are generated together: while one batch runs on the
engine's thread, new completions wait, and the next batch takes up to ``--batch-size`` of them
(those with the same sampling settings; a steered or seeded completion runs in a batch of its
own). The reading goes through the service's usual capture and answer batches.

Each completion is a :class:`ChatJob` run by a task of its own: the route waits for the job
to be admitted and prepared (so that a refusal is a plain HTTP error, even when streaming),
then reads its events: text deltas as the reply grows, then the finished completion.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch

from oracle.engines import AnswerRequest
from oracle.inputs import TargetInput
from oracle.steering.generate import ChatReply
from serving.chat_schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatUsage,
    Choice,
    OracleReading,
    ReplyMessage,
    SteerAsk,
)
from serving.schemas import AnswerOut, effective_temperature
from serving.service import OracleService
from serving.steering import Steering, resolve_steering

log = logging.getLogger(__name__)


@dataclass
class ChatJob:
    """One completion in progress: ``ready`` resolves once admitted and prepared (or raises
    the refusal); ``events`` then yields ("text", delta) items and one ("done", ChatCompletion)
    or ("error", exception)."""

    body: ChatCompletionRequest
    steering: Steering | None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    ready: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    model: str = ""
    row: list[int] | None = None
    task: asyncio.Task | None = None


@dataclass
class _Pending:
    row: list[int]
    key: tuple
    options: dict[str, Any]
    on_text: Any
    future: asyncio.Future


class ChatService:
    """Chat completions over an :class:`OracleService`'s engine (one per app)."""

    def __init__(self, service: OracleService, steering_jobs: dict | None = None) -> None:
        self.service = service
        self.steering_jobs = steering_jobs if steering_jobs is not None else {}
        self.pending: list[_Pending] = []
        self.running = False

    @property
    def engine(self):
        return self.service.engine

    # ------------------------------------------------------------------ checks
    def check(self, body: ChatCompletionRequest) -> Steering | None:
        """Every check that needs no tokenising: model, limits, the steering vector."""
        service, limits = self.service, self.service.limits
        service.check_model(body.model)
        ask = body.oracle
        limits.chars(
            [m["content"] for m in body.conversation()],
            ask.questions if ask else None,
            body.stop,
        )
        limits.new_tokens(body.reply_tokens(limits.max_new_tokens))
        if ask is not None:
            limits.questions(ask.questions)
            if ask.max_tokens is not None:
                limits.new_tokens(ask.max_tokens)
            service.check_layer(ask.layer)
        return self.steering_of(body.steer) if body.steer is not None else None

    def steering_of(self, ask: SteerAsk) -> Steering:
        """The vector of ``ask``: inline, or a finished ``/v1/steer`` job's (404 if unknown),
        with the job's layer, scale and apply mode unless ``ask`` gives them."""
        return resolve_steering(
            ask, self.steering_jobs, self.engine.d_model, self.service.check_layer
        )

    # ------------------------------------------------------------------ a completion
    async def start(self, body: ChatCompletionRequest) -> ChatJob:
        """Check, admit and prepare a completion; raises its refusal (400, 404, 429, ...)
        before any reply is generated. The job then runs on its own task."""
        steering = self.check(body)
        job = ChatJob(body, steering, model=body.model or self.service.target_id)
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        await job.ready
        return job

    async def complete(self, body: ChatCompletionRequest) -> ChatCompletion:
        """A whole completion (no streaming)."""
        job = await self.start(body)
        while True:
            kind, value = await job.events.get()
            if kind == "done":
                return value
            if kind == "error":
                raise value

    async def _run(self, job: ChatJob) -> None:
        try:
            async with self.service.admit("query"):
                row = await self.service.in_prep(self.engine.chat_ids, job.body.conversation())
                limits = self.service.limits
                reply_max = job.body.reply_tokens(limits.max_new_tokens)
                limits.tokens(len(row) + reply_max, "the conversation with its longest reply")
                job.row = row
                job.ready.set_result(None)
                job.events.put_nowait(("done", await self._complete(job, reply_max)))
        except BaseException as exc:  # the route raises it, or sends it as the stream's last event
            if not job.ready.done():
                job.ready.set_exception(exc)
            else:
                job.events.put_nowait(("error", exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _complete(self, job: ChatJob, reply_max: int) -> ChatCompletion:
        body, steering = job.body, job.steering
        loop = asyncio.get_running_loop()

        def on_text(delta: str) -> None:  # called on the engine's thread
            loop.call_soon_threadsafe(job.events.put_nowait, ("text", delta))

        options: dict[str, Any] = dict(
            max_new_tokens=reply_max,
            temperature=effective_temperature(body.temperature),
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(body.stop),
        )
        key: tuple = tuple(options.items())
        if steering is not None or body.seed is not None:
            key = (job.id,)  # alone in its batch: its vector, or a reproducible sample
        if steering is not None:
            options.update(
                vector=steering.vector,
                layer=steering.layer,
                scale=steering.scale,
                apply=steering.apply,
            )
        reply = await self.generate(job.row, key, options, on_text if body.stream else None)
        reading = None
        if body.oracle is not None:
            reading = await self.read(body, reply, steering)
        return ChatCompletion(
            id=job.id,
            created=job.created,
            model=job.model,
            choices=[
                Choice(message=ReplyMessage(content=reply.text), finish_reason=reply.finish_reason)
            ],
            usage=ChatUsage(
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                total_tokens=reply.prompt_tokens + reply.completion_tokens,
            ),
            oracle=reading,
        )

    async def read(
        self, body: ChatCompletionRequest, reply: ChatReply, steering: Steering | None
    ) -> OracleReading:
        """The oracle's answers about the target's activations over the conversation and its
        reply (read from the steered target when the reply was steered)."""
        ask = body.oracle
        service = self.service
        conversation = [*body.conversation(), {"role": "assistant", "content": reply.text}]
        options = dict(
            max_new_tokens=ask.max_tokens or min(32, service.limits.max_new_tokens),
            yes_no=ask.yes_no,
        )
        layer = service.check_layer(ask.layer)
        if steering is None:
            request = self.engine.capture_request(
                TargetInput(messages=conversation), layer, ask.positions
            )
            result = await service.query(request, ask.questions, options)
            positions, answers = result.capture.positions, result.answers
        else:
            request = self.engine.capture_request(
                TargetInput(messages=conversation), layer, ask.positions
            )
            await service.prepare(request)  # tokenised and checked off the engine's thread
            positions = request.prepared.positions

            def steered(engine) -> torch.Tensor:
                acts = engine.capture_steered(
                    [conversation], layer, steering.vector, steering.layer,
                    steering.scale, ask.positions, apply=steering.apply,
                )  # fmt: skip
                return acts[0]

            acts_PD = await service.call(steered)
            service.limits.positions(acts_PD.shape[0])
            requests = [AnswerRequest(acts_PD, q, layer, **options) for q in ask.questions]
            answers = await service.answer(requests)
        return OracleReading(
            model=service.oracle_id,
            layer=layer,
            positions=positions,
            steered=steering is not None,
            answers=[
                AnswerOut(question=q, answer=a.text, p_yes=a.p_yes)
                for q, a in zip(ask.questions, answers, strict=True)
            ],
        )

    # ------------------------------------------------------------------ batching replies
    async def generate(self, row: list[int], key: tuple, options: dict, on_text) -> ChatReply:
        """The reply after ``row``, generated in a batch with concurrent completions of the
        same ``key`` (their sampling settings)."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(row, key, options, on_text, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run batches while completions wait; one batch on the engine at a time, so that
        completions arriving meanwhile join the next one."""
        try:
            await asyncio.sleep(self.service.settings.batch_wait_ms / 1000)
            while self.pending:
                self.pending = [p for p in self.pending if not p.future.done()]
                if not self.pending:
                    break
                key = self.pending[0].key
                size = self.service.settings.batch_size
                batch = [p for p in self.pending if p.key == key][:size]
                self.pending = [p for p in self.pending if p not in batch]
                await self._run_batch(batch)
        finally:
            self.running = False

    async def _run_batch(self, batch: list[_Pending]) -> None:
        def on_text(row: int, delta: str) -> None:
            if batch[row].on_text is not None:
                batch[row].on_text(delta)

        rows = [p.row for p in batch]
        options = batch[0].options
        self.service.metrics.observe_batch("chat", len(rows))  # /metrics: kind="chat"
        try:
            replies = await self.service.call(
                lambda engine: engine.generate_chat(rows, on_text=on_text, **options)
            )
        except Exception as exc:  # noqa: BLE001 - each completion reports its batch's failure
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, reply in zip(batch, replies, strict=True):
            if not p.future.done():
                p.future.set_result(reply)


async def sse_events(job: ChatJob) -> AsyncIterator[str]:
    """The job's events as OpenAI chat-completion chunks (server-sent events), ending with
    ``[DONE]``; the last chunk before it carries ``finish_reason``, the ``oracle`` reading and,
    with ``stream_options.include_usage``, the usage. An error after the stream began comes as
    an ``error`` event."""
    from serving.chat_errors import openai_error_body

    body = job.body
    head = dict(id=job.id, object="chat.completion.chunk", created=job.created)
    head["model"] = job.model
    usage_chunk = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        choice = dict(index=0, delta=delta, logprobs=None, finish_reason=finish)
        data = dict(head, choices=[choice], **extra)
        if usage_chunk and "usage" not in data:
            data["usage"] = None
        return f"data: {_json(data)}\n\n"

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await job.events.get()
            if kind == "text":
                yield chunk({"content": value})
                continue
            finished = True
            if kind == "error":
                raise value
            done: ChatCompletion = value
            reading = done.oracle.model_dump() if done.oracle is not None else None
            finish = done.choices[0].finish_reason
            if not usage_chunk:
                yield chunk({}, finish, oracle=reading)
            else:
                yield chunk({}, finish)
                data = dict(head, choices=[], usage=done.usage.model_dump())
                yield f"data: {_json(dict(data, oracle=reading))}\n\n"
            break
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error is its last event
        yield f"data: {_json(openai_error_body(exc))}\n\n"
    finally:
        if not finished and job.task is not None and not job.task.done():
            job.task.cancel()  # the client left: stop waiting for what it will not read
    yield "data: [DONE]\n\n"


def _json(data: dict) -> str:
    import json

    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
