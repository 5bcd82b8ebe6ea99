"""The service layer: owns the engine, admits requests (bounded), batches them, times them out.

Routers call this, never the engine directly, so that every request goes through the same
admission control (:mod:`serving.admission`: the limits, defined once, and a lane per kind of
work), batching and timeout. Target inputs are tokenised, checked and their positions chosen on
a thread of their own (``prepare``), off the event loop and off the engine's thread; then
``engine.capture`` / ``engine.answer`` run on one worker thread, where concurrent HTTP requests
are grouped into batches (hf). An engine with continuous batching (vllm) takes answers straight
from the event loop instead (``engine.submit``): they join vLLM's running batch at its next
step, while the worker thread captures the next requests. Long work (steering, generation,
audits) reaches the worker in steps on its long lane (``long_step``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from oracle.capture import Capture
from oracle.engines import Answer, AnswerRequest, CaptureRequest, Engine, create_engine
from oracle.errors import OracleInputError
from oracle.inject import check_vectors
from serving.admission import Limits, make_lanes
from serving.batcher import MicroBatcher
from serving.errors import NotFound, ServiceTimeout, ServiceUnavailable
from serving.metrics import Metrics
from serving.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class QueryResult:
    """A capture, the answers to each question, and optional per-token P(yes) scores."""

    capture: Capture
    layer: int
    answers: list[Answer]
    token_scores: list[tuple[int, float]] | None = None  # (position, P(yes)) per scored token


def load_engine(settings: ServeSettings) -> Engine:
    """Create the engine ``settings`` name; with no model given, the toy world's oracle."""
    from oracle.worlds import resolve

    target, oracle = resolve(settings.world, settings.target, settings.oracle)
    return create_engine(settings.engine, target, oracle, **settings.engine_kwargs())


class OracleService:
    """One engine behind a bounded, batched, timed-out async interface.

    Attributes routers may use: ``engine`` (the :class:`~oracle.engines.Engine`), ``settings``
    (:class:`ServeSettings`), ``metrics`` (:class:`Metrics`), ``model_ids`` (names accepted
    in a request's ``model`` field).
    """

    def __init__(
        self,
        engine: Engine,
        settings: ServeSettings,
        metrics: Metrics | None = None,
        owns_engine: bool = True,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.owns_engine = owns_engine
        self.limits = Limits(settings)
        self.lanes = make_lanes(settings)
        self.stopping = False
        # read when /metrics is scraped, so admission does no metric bookkeeping of its own
        self.metrics.in_flight.set_function(lambda: self.active)
        self.batcher = MicroBatcher(
            self._run_batch,
            batch_size=settings.batch_size,
            wait_s=settings.batch_wait_ms / 1000,
            on_batch=self.metrics.observe_batch,
            long_share=settings.long_share,
        )
        # tokenising and choosing positions: off the event loop and off the engine's thread
        self.prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prep")
        from oracle.worlds import default_world, find_world, world_of

        self.world = world_of(settings.world, settings.target, settings.oracle)
        self.world_spec = find_world(self.world)  # its description, for the page
        named = self.world or default_world()
        oracle_name = Path(settings.oracle).name if settings.oracle else f"{named}_world"
        self.oracle_id = oracle_name
        self.target_id = settings.target or engine.target_name
        self.model_ids = {oracle_name, self.target_id}
        if settings.oracle:
            self.model_ids.add(str(settings.oracle))
        if settings.target:
            self.model_ids.add(str(settings.target))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        self.stopping = True
        await self.batcher.stop()
        self.prep.shutdown(wait=False, cancel_futures=True)
        if self.owns_engine:
            self.engine.close()

    # ------------------------------------------------------------------ admission
    @property
    def active(self) -> int:
        """Queries admitted now (queued or running)."""
        return self.lanes["query"].admitted

    @contextlib.asynccontextmanager
    async def admit(self, kind: str = "query") -> AsyncIterator[None]:
        """Admit one request of ``kind`` (see :mod:`serving.admission`) or raise 429 with
        Retry-After (its lane is full) or 503 (shutting down); wait for the lane's turn; time
        the whole out after ``--timeout`` (504), which cancels the work between its steps."""
        if self.stopping:
            raise ServiceUnavailable("the server is shutting down")
        lane = self.lanes[kind]
        try:
            lane.enter()
        except Exception:
            self.metrics.rejected.inc()
            raise
        try:
            async with asyncio.timeout(self.settings.timeout), lane.turn():
                yield
        except TimeoutError:
            self.metrics.timeouts.inc()
            raise ServiceTimeout(
                f"the request took longer than the server's timeout ({self.settings.timeout} s)"
            ) from None
        finally:
            lane.leave()

    def check_model(self, model: str | None) -> None:
        """A request's ``model`` field, if given, must name what this server serves (404)."""
        if model is not None and model not in self.model_ids:
            raise NotFound(f"unknown model {model!r}; this server serves {sorted(self.model_ids)}")

    # ------------------------------------------------------------------ engine calls
    def _run_batch(self, kind: str, items: list[Any]) -> list[Any]:
        if kind == "capture":
            return self.engine.capture(items)
        if kind == "answer":
            return self.engine.answer(items)
        if kind == "call":
            return [items[0](self.engine)]
        raise ValueError(f"unknown job kind {kind!r}")

    def check_layer(self, layer: int | None) -> int:
        """The read layer, defaulted and checked against the target's depth."""
        if layer is None:
            return self.engine.config.default_layer
        n = self.engine.n_layers
        if not -n <= layer < n:
            raise OracleInputError(
                f"layer {layer} is out of range: the target has {n} blocks (0..{n - 1})"
            )
        return layer % n

    def check_answer_request(self, request: AnswerRequest) -> None:
        """Reject a bad request before it joins a batch (so it fails alone, with its reason)."""
        check_vectors(request.activations, self.engine.d_model, what="activations")
        self.limits.positions(request.activations.shape[0])
        self.limits.new_tokens(request.max_new_tokens)
        if not request.question.strip():
            raise OracleInputError("question is empty")

    async def in_prep(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the preparation thread (tokenising: off the event loop and off the
        engine's thread)."""
        return await asyncio.get_running_loop().run_in_executor(self.prep, fn, *args)

    async def prepare(self, request: CaptureRequest) -> CaptureRequest:
        """Tokenise ``request``'s input on the preparation thread and check its length against
        ``--max-tokens`` before its positions are chosen (400 beyond): an oversized input
        never reaches the engine's thread, nor a batch."""
        return await self.in_prep(self.engine.prepare_capture, request, self.limits.max_tokens)

    async def capture(self, request: CaptureRequest) -> Capture:
        """Capture one target input (batched with concurrent captures)."""
        request.layers = [self.check_layer(x) for x in (request.layers or [None])]
        if request.prepared is None:
            await self.prepare(request)
        return await self.batcher.submit("capture", request)

    async def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        """Answer several questions; they join concurrent requests' batches."""
        for r in requests:
            r.layer = self.check_layer(r.layer)
            self.check_answer_request(r)
        if self.engine.continuous_batching:  # the engine batches them itself (vllm)
            futures = self.engine.submit(requests)
            answers = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        else:
            answers = await asyncio.gather(*(self.batcher.submit("answer", r) for r in requests))
        for a in answers:
            self.metrics.tokens.labels("prompt").inc(a.prompt_tokens)
            self.metrics.tokens.labels("completion").inc(a.completion_tokens)
        return list(answers)

    async def query(
        self,
        capture_request: CaptureRequest,
        questions: Sequence[str],
        options: dict[str, Any],
        per_token: bool = False,
    ) -> QueryResult:
        """Capture once, answer each question; ``per_token`` scores each read token alone.

        ``options`` are :class:`AnswerRequest` fields (max_new_tokens, temperature, ...).
        """
        self.limits.questions(questions)
        cap = await self.capture(capture_request)
        layer, acts_PD = cap.layers[0], cap.activations[0]
        requests = self.engine.answer_requests(cap, questions, **options)
        if not per_token:
            return QueryResult(cap, layer, await self.answer(requests))
        # Both go to the batcher at once, so the per-token scores share batches with the answers.
        answers, scores = await asyncio.gather(
            self.answer(requests), self.token_scores(acts_PD, cap.positions, questions[0], layer)
        )
        return QueryResult(cap, layer, answers, scores)

    async def token_scores(
        self, acts_PD: torch.Tensor, positions: list[int], question: str, layer: int
    ) -> list[tuple[int, float]]:
        """P(yes) for ``question`` about each read token alone (the last ``max_heat_tokens``)."""
        keep = list(range(len(positions)))[-self.limits.max_heat_tokens :]
        requests = [
            AnswerRequest(acts_PD[i : i + 1], question, layer, max_new_tokens=1, yes_no=True)
            for i in keep
        ]
        answers = await self.answer(requests)
        return [(positions[i], float(a.p_yes)) for i, a in zip(keep, answers, strict=True)]

    async def call(self, fn: Callable[[Engine], Any]) -> Any:
        """Run ``fn(engine)`` on the engine's thread, alone, in the queries' lane."""
        return await self.batcher.submit("call", fn)

    async def long_step(self, fn: Callable[[Engine], Any]) -> Any:
        """Run one step of long work, ``fn(engine)``, on the engine's thread, alone, in the long
        lane (between the queries' batches, within ``--long-share`` of the engine's time).
        Keep steps short: a query arriving meanwhile waits for the step in progress."""
        return await self.batcher.submit("call", fn, lane="long")
