"""Admission by cost: every per-request limit of the server, defined once, and the lanes that
admit work.

Any route (ours, or one added later) uses the two through its :class:`~serving.service.
OracleService`:

- ``service.limits`` checks what a request asks for before any work is done: characters of
  text over all its fields, questions, answer length, activation positions, batch sizes.
  Token counts are measured later, off the event loop and off the engine thread
  (``service.prepare``), and checked before any position is selected.
- ``async with service.admit(kind):`` admits the request into the lane of its ``kind`` (429 with
  ``Retry-After`` when the lane is full, 503 while the server shuts down), waits for the lane's
  turn (its concurrency) and times the whole out (504), which cancels the work between steps.

Lanes: ``query`` (interactive: /v1/query, /v1/activations, /v1/oracle; up to
``--queue-depth`` at once), and the long kinds ``generate``, ``steer`` and ``audit`` (up to
``--max-jobs`` queued and running each, ``--long-concurrency`` of each running at once). Long
work reaches the engine in steps on the batcher's long lane, which the engine thread serves
between the queries' batches within ``--long-share`` of its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterable

from oracle.errors import OracleInputError
from serving.errors import ServiceBusy
from serving.settings import ServeSettings

LONG_KINDS = ("generate", "steer", "audit")
KINDS = ("query", *LONG_KINDS)
CHARS_PER_TOKEN = 32  # the default character cap per token of --max-tokens


class Limits:
    """The server's limits on one request; each check raises :class:`OracleInputError` (400)
    with a message naming the limit and the option that sets it."""

    def __init__(self, settings: ServeSettings) -> None:
        self.max_tokens = settings.max_tokens
        self.max_new_tokens = settings.max_new_tokens
        self.max_questions = settings.max_questions
        self.max_heat_tokens = settings.max_heat_tokens
        self.max_chars = settings.max_chars or CHARS_PER_TOKEN * settings.max_tokens
        self.batch_size = settings.batch_size

    def as_dict(self) -> dict[str, int]:
        return dict(
            max_tokens=self.max_tokens,
            max_new_tokens=self.max_new_tokens,
            max_questions=self.max_questions,
            max_heat_tokens=self.max_heat_tokens,
            max_chars=self.max_chars,
            batch_size=self.batch_size,
        )

    def chars(self, *fields: str | Iterable[str] | None) -> int:
        """Characters of text over ``fields`` (strings or lists of strings; None skipped);
        refused beyond ``max_chars``, so that nothing oversized is ever tokenised."""
        total = 0
        for field in fields:
            if field is None:
                continue
            total += len(field) if isinstance(field, str) else sum(len(t) for t in field)
        if total > self.max_chars:
            raise OracleInputError(
                f"the request holds {total} characters of text, more than the server's limit "
                f"of {self.max_chars} (--max-chars)"
            )
        return total

    def questions(self, questions: Iterable[str]) -> None:
        n = len(list(questions))
        if n > self.max_questions:
            raise OracleInputError(
                f"questions holds {n} items, more than the server's limit of "
                f"{self.max_questions} (--max-questions)"
            )

    def new_tokens(self, n: int) -> None:
        if n > self.max_new_tokens:
            raise OracleInputError(
                f"max_tokens {n} exceeds the server's limit of {self.max_new_tokens} "
                "(--max-new-tokens)"
            )

    def tokens(self, n: int, what: str = "the input") -> None:
        if n > self.max_tokens:
            raise OracleInputError(
                f"{what} has {n} tokens, more than the server's limit of {self.max_tokens} "
                "(--max-tokens)"
            )

    def positions(self, n: int, what: str = "activations") -> None:
        if n > self.max_tokens:
            raise OracleInputError(
                f"{what} hold {n} positions, more than the server's limit of "
                f"{self.max_tokens} (--max-tokens)"
            )

    def batch(self, n: int, what: str = "batch_size") -> None:
        if n > self.batch_size:
            raise OracleInputError(
                f"{what} {n} exceeds the server's limit of {self.batch_size} (--batch-size)"
            )


class Lane:
    """Admission of one kind of work: at most ``capacity`` admitted (queued and running)
    at once, 429 beyond; at most ``concurrency`` of them running (None: no further bound)."""

    def __init__(
        self, kind: str, capacity: int, concurrency: int | None = None, retry_after: int = 1
    ) -> None:
        self.kind = kind
        self.capacity = capacity
        self.admitted = 0
        self.retry_after = retry_after
        self._turns = asyncio.Semaphore(concurrency) if concurrency is not None else None

    def enter(self, force: bool = False) -> None:
        """Admit one, or raise :class:`ServiceBusy` (429 with Retry-After) if full; ``force``
        admits regardless (jobs resumed at start-up)."""
        if not force and self.admitted >= self.capacity:
            what = "queries" if self.kind == "query" else f"{self.kind} jobs"
            raise ServiceBusy(
                f"the server holds {self.admitted} {what}, its limit; retry after "
                f"{self.retry_after} s",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.admitted += 1

    def leave(self) -> None:
        self.admitted = max(0, self.admitted - 1)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for one of the lane's running places (immediately without a bound)."""
        if self._turns is None:
            yield
            return
        async with self._turns:
            yield


def make_lanes(settings: ServeSettings) -> dict[str, Lane]:
    """The lanes of every kind, from the settings (``Retry-After``: a tenth of the timeout)."""
    retry = max(1, math.ceil(settings.timeout / 10))
    lanes = {"query": Lane("query", settings.queue_depth, None, retry)}
    for kind in LONG_KINDS:
        lanes[kind] = Lane(kind, settings.max_jobs, settings.long_concurrency, retry)
    return lanes
