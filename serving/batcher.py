"""Micro-batching: concurrent requests to one engine grouped into batches on one worker thread.

Each job is a kind (``capture``, ``answer`` or ``call``) and an item. The worker takes the first
job, gathers queued jobs of the same kind, waiting up to ``wait_s`` for more (up to
``batch_size``), and runs them as one engine call in a single-thread executor (one model, one
thread); jobs of other kinds keep their places in the queue. ``call`` jobs run alone: they
are callables that need the engine to themselves (steering, audits).
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
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.run_batch = run_batch
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.on_batch = on_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.jobs: deque[_Job] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.max_batch_seen = 0

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
        while self.jobs:
            job = self.jobs.popleft()
            if not job.future.done():
                job.future.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, kind: str, item: Any) -> Any:
        """Queue one job and wait for its result (raises what its engine call raised)."""
        if self.task is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        self.jobs.append(_Job(kind, item, future))
        self.wakeup.set()
        return await future

    @property
    def pending(self) -> int:
        return len(self.jobs)

    async def _collect(self) -> list[_Job]:
        while not self.jobs:
            self.wakeup.clear()
            await self.wakeup.wait()
        jobs = [self.jobs.popleft()]
        if jobs[0].kind == "call":
            return jobs
        deadline = time.perf_counter() + self.wait_s
        while True:
            jobs += self._take(jobs[0].kind, self.batch_size - len(jobs))
            left = deadline - time.perf_counter()
            if len(jobs) >= self.batch_size or left <= 0:
                return jobs
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

    async def _run(self, kind: str, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        jobs = [j for j in jobs if not j.future.done()]  # cancelled by a timeout meanwhile
        if not jobs:
            return
        if self.on_batch is not None:
            self.on_batch(kind, len(jobs))
        self.max_batch_seen = max(self.max_batch_seen, len(jobs))
        items = [j.item for j in jobs]
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, kind, items)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(jobs) > 1:
                # One bad item must not fail its neighbours: rerun one by one to attribute it.
                for job in jobs:
                    await self._run(kind, [job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    async def _worker(self) -> None:
        while True:
            jobs = await self._collect()
            by_kind: dict[str, list[_Job]] = {}
            for job in jobs:
                by_kind.setdefault(job.kind, []).append(job)
            for kind, group in by_kind.items():
                try:
                    await self._run(kind, group)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the worker must survive anything
                    log.exception("batch of %d %s jobs failed", len(group), kind)
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(RuntimeError("engine batch failed"))
