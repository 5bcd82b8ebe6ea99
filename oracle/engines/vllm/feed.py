"""Continuous feeding of a ``vllm.LLM``: requests join the running batch as they arrive.

``LLM.generate`` blocks until every request it was given has finished, so a server calling it
once per micro-batch runs one batch at a time: requests that arrive meanwhile wait for the whole
batch, and the engine idles while the server prepares the next. A :class:`VLLMFeeder` owns one
thread that adds requests to vLLM's engine (``LLM.enqueue``) between its steps
(``llm_engine.step()``), so new requests enter vLLM's scheduler at the next step, each finishes
on its own, and callers on any thread wait on a :class:`concurrent.futures.Future`.

``vllm.LLM`` is not thread-safe: once a feeder has started, only its thread may touch the engine
(set-up calls such as ``collective_rpc`` go before the first :meth:`VLLMFeeder.submit`).
:func:`feeder_for` gives every user of one ``LLM`` the same feeder.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_FEEDERS: weakref.WeakKeyDictionary[Any, VLLMFeeder] = weakref.WeakKeyDictionary()
_FEEDERS_LOCK = threading.Lock()


@dataclass
class _Batch:
    prompts: list[Any]
    params: list[Any]
    futures: list[Future]


class VLLMFeeder:
    """One thread that feeds requests to a ``vllm.LLM`` and resolves futures as they finish."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._running: dict[str, Future] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[Future]:
        """Queue prompts (vLLM prompt dicts) with their SamplingParams; one future per prompt.

        Each future resolves to the prompt's final ``vllm.RequestOutput``, or to the exception
        that vLLM raised for it (a request vLLM refuses fails alone, not its neighbours).
        """
        if len(prompts) != len(params):
            raise ValueError("one SamplingParams per prompt")
        futures: list[Future] = [Future() for _ in prompts]
        if not prompts:
            return futures
        if self._closed:
            raise RuntimeError("this vLLM feeder is closed")
        self._ensure_thread()
        self._queue.put(_Batch(list(prompts), list(params), futures))
        return futures

    def close(self) -> None:
        """Stop the thread; requests still in vLLM fail with RuntimeError. Idempotent."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=60)
        self._fail_all(RuntimeError("the vLLM engine was closed"))

    # ------------------------------------------------------------------ the thread
    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vllm-feed", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        engine = self.llm.llm_engine
        while True:
            # Idle: sleep until work arrives. Busy: take whatever arrived during the last step.
            for batch in self._queued(wait=not self._running):
                if batch is None:
                    return
                self._add(batch)
            if not self._running:
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # noqa: BLE001 - vLLM died: every waiting request learns it
                log.exception("vLLM step failed")
                self._fail_all(RuntimeError(f"the vLLM engine failed: {exc}"))
                continue
            for out in outputs:
                if out.finished:
                    future = self._running.pop(out.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(out)

    def _add(self, batch: _Batch) -> None:
        for prompt, params, future in zip(batch.prompts, batch.params, batch.futures, strict=True):
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                (request_id,) = self.llm.enqueue([prompt], [params], use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                future.set_exception(exc)
                continue
            # enqueue returns vLLM's internal id ("<id>-<8 random characters>"); outputs carry
            # the id the LLM gave (a counter's number).
            self._running[request_id.split("-", 1)[0]] = future

    def _queued(self, wait: bool) -> Iterator[_Batch | None]:
        """What is queued, in order (None: close() was called); ``wait``: wait for the first."""
        while True:
            try:
                yield self._queue.get(block=wait)
            except queue.Empty:
                return
            wait = False

    def _fail_all(self, exc: Exception) -> None:
        running, self._running = self._running, {}
        stop = False
        for batch in self._queued(wait=False):
            if batch is None:
                stop = True
                continue
            for future in batch.futures:
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)
        if stop:
            self._queue.put(None)  # close() is waiting for the thread to see it
        for future in running.values():
            if not future.done():
                future.set_exception(exc)


def feeder_for(llm: Any) -> VLLMFeeder:
    """The one feeder of ``llm`` (created on first use), shared by every engine over it."""
    with _FEEDERS_LOCK:
        feeder = _FEEDERS.get(llm)
        if feeder is None:
            feeder = _FEEDERS[llm] = VLLMFeeder(llm)
        return feeder


def generate_plain(
    llm, rows: list[list[int]], new_tokens: list[int], in_flight: int | None = None
) -> None:
    """Plain generation in vLLM: each row's exact ``new_tokens`` (EOS ignored), greedy.
    ``in_flight``: that many requests at once, each replaced as it finishes (as that many
    clients load a server), fed between vLLM's steps as the engine feeds answers; None: all at
    once, one ``LLM.generate`` (offline batch inference)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from vllm import SamplingParams

    params = [
        SamplingParams(max_tokens=m, min_tokens=m, ignore_eos=True, temperature=0.0)
        for m in new_tokens
    ]
    inputs = [{"prompt_token_ids": row} for row in rows]
    if in_flight is None:
        llm.generate(inputs, params, use_tqdm=False)
        return
    feeder = feeder_for(llm)
    todo = iter(zip(inputs, params, strict=True))

    def more(n: int) -> set:
        batch = [job for _, job in zip(range(n), todo, strict=False)]
        return set(feeder.submit([i for i, _ in batch], [p for _, p in batch]))

    running = more(in_flight)
    while running:
        done, running = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # raises what vLLM raised
        running |= more(len(done))
