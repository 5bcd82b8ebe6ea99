"""Micro-batching: concurrent requests to one engine grouped into batches on one worker thread,
with a second, long lane for steps of long work.

Each job is a kind (``capture``, ``answer`` or ``call``) and an item. On the interactive lane
the worker takes the first job, gathers queued jobs of the same kind, waiting up to ``wait_s``
for more (up to ``batch_size``), and runs them as one engine call in a single-thread executor
(one model, one thread); jobs of other kinds keep their places in the queue. ``call`` jobs run
alone: they are callables that need the engine to themselves.

The long lane holds steps of long work (a steering step, an audit batch, a chunk of
generation), each a ``call``. When both lanes wait, the worker runs a long step only while
long work has taken less than ``long_share`` of its recent time, so a query waits at most for
the step in progress; with no query waiting, long work runs back to back.

A batch that fails is split in halves, each run again, so that a bad item is found in
O(log n) engine calls and the others are answered in halves, not one by one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RunBatch = Callable[[str, list[Any]], list[Any]]
LANES = ("interactive", "long")
DECAY = 0.8  # weight of the past in the lanes' recent engine time, per batch run


@dataclass
class _Job:
    kind: str
    item: Any
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Group concurrent jobs of the same kind into one call of ``run_batch(kind, items)``."""

    def __init__(
        self,
        run_batch: RunBatch,
        batch_size: int = 16,
        wait_s: float = 0.005,
        on_batch: Callable[[str, int], None] | None = None,
        long_share: float = 0.25,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 < long_share <= 1:
            raise ValueError("long_share must be in (0, 1]")
        self.run_batch = run_batch
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.on_batch = on_batch
        self.long_share = long_share
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.jobs: deque[_Job] = deque()
        self.long_jobs: deque[_Job] = deque()
        self.busy = dict.fromkeys(LANES, 0.0)  # recent engine seconds per lane (decayed)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.max_batch_seen = 0
        self.engine_calls = 0

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        for queue in (self.jobs, self.long_jobs):
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    job.future.cancel()
        # the engine call in progress, if any, runs to its end in the executor's thread: wait
        # for it, so that the engine is idle when stop returns (a step of steering may be
        # inside the model, its hooks on it)
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    async def submit(self, kind: str, item: Any, lane: str = "interactive") -> Any:
        """Queue one job on ``lane`` and wait for its result (raises what its engine call
        raised). On the long lane every job is a ``call``. Cancelling the wait before the job
        starts takes it out of the queue."""
        if self.task is None:
            raise RuntimeError("the batcher is not started")
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        if lane == "long" and kind != "call":
            raise ValueError("the long lane runs calls only")
        future = asyncio.get_running_loop().create_future()
        (self.long_jobs if lane == "long" else self.jobs).append(_Job(kind, item, future))
        self.wakeup.set()
        return await future

    @property
    def pending(self) -> int:
        return len(self.jobs) + len(self.long_jobs)

    def _drop_cancelled(self) -> None:
        for queue in (self.jobs, self.long_jobs):
            while queue and queue[0].future.done():
                queue.popleft()

    def _next_lane(self) -> str:
        """The long lane when only it waits, or when both wait and long work has had less
        than its share of the engine's recent time."""
        if not self.long_jobs:
            return "interactive"
        if not self.jobs:
            return "long"
        total = self.busy["interactive"] + self.busy["long"]
        return (
            "long" if total == 0 or self.busy["long"] < self.long_share * total else "interactive"
        )

    async def _collect(self) -> tuple[str, list[_Job]]:
        while True:
            self._drop_cancelled()
            if self.jobs or self.long_jobs:
                break
            self.wakeup.clear()
            await self.wakeup.wait()
        lane = self._next_lane()
        if lane == "long":
            return lane, [self.long_jobs.popleft()]
        jobs = [self.jobs.popleft()]
        if jobs[0].kind == "call":
            return lane, jobs
        deadline = time.perf_counter() + self.wait_s
        while True:
            jobs += self._take(jobs[0].kind, self.batch_size - len(jobs))
            left = deadline - time.perf_counter()
            if len(jobs) >= self.batch_size or left <= 0:
                return lane, jobs
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), left)
            except TimeoutError:
                pass  # one last look at the queue, then the batch goes

    def _take(self, kind: str, n: int) -> list[_Job]:
        """Up to ``n`` queued jobs of ``kind``, in order; jobs of other kinds keep their places.

        One kind per batch keeps each engine call full (a capture batch and an answer batch of
        half the size each cost nearly as much as two full ones). The scan stops at a ``call``
        job: it waits for this batch, then runs alone, and nothing behind it goes first.
        """
        taken: list[_Job] = []
        kept: deque[_Job] = deque()
        while self.jobs and len(taken) < n:
            job = self.jobs.popleft()
            if job.kind == "call":
                kept.append(job)
                break
            (taken if job.kind == kind else kept).append(job)
        kept.extend(self.jobs)
        self.jobs = kept
        return taken

    async def _call(self, lane: str, kind: str, items: list[Any]) -> list[Any]:
        """One engine call on the worker thread, its time counted to ``lane``."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        self.engine_calls += 1
        try:
            return await loop.run_in_executor(self.executor, self.run_batch, kind, items)
        finally:
            for name in LANES:
                self.busy[name] *= DECAY
            self.busy[lane] += time.perf_counter() - start

    async def _run(self, kind: str, jobs: list[_Job], lane: str = "interactive") -> None:
        jobs = [j for j in jobs if not j.future.done()]  # cancelled by a timeout meanwhile
        if not jobs:
            return
        if self.on_batch is not None:
            self.on_batch(kind, len(jobs))
        self.max_batch_seen = max(self.max_batch_seen, len(jobs))
        try:
            results = await self._call(lane, kind, [j.item for j in jobs])
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(jobs) > 1:
                # One bad item must not fail its neighbours: halve until it stands alone.
                half = len(jobs) // 2
                await self._run(kind, jobs[:half], lane)
                await self._run(kind, jobs[half:], lane)
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    async def _worker(self) -> None:
        while True:
            lane, jobs = await self._collect()
            by_kind: dict[str, list[_Job]] = {}
            for job in jobs:
                by_kind.setdefault(job.kind, []).append(job)
            for kind, group in by_kind.items():
                try:
                    await self._run(kind, group, lane)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the worker must survive anything
                    log.exception("batch of %d %s jobs failed", len(group), kind)
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(RuntimeError("engine batch failed"))
