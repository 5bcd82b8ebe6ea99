"""The resumable audit: every (record, question) pair of a log through the oracle, in batches.

Results are appended to ``OUT/results.jsonl`` and synced after every batch. At start the run
rebuilds the set of finished pairs from that file, so running the same audit again after a
crash (even ``kill -9``) continues where it stopped and ends with every pair exactly once.
``shard=(i, n)`` keeps the records whose id hashes to ``i`` modulo ``n``: n processes (or
machines) with i = 0..n-1 split a log between them, and :mod:`audit.merge` joins their outputs.
A record that cannot be read becomes error rows, one per question; the run goes on.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit.logformat import ActivationLog, Record, write_atomic
from audit.parts import PARTS, move_parts
from audit.questions import Question
from audit.results import ResultsFile
from oracle.engines import AnswerRequest, Engine
from oracle.errors import OracleInputError

log = logging.getLogger(__name__)

RUN_FILE = "audit.json"
RESULTS = "results.jsonl"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0-based i) to ``(i, n)``; None means the whole log, ``(0, 1)``."""
    if text is None or text == "":
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise OracleInputError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise OracleInputError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def in_shard(record_id: str, shard: tuple[int, int]) -> bool:
    """Whether ``record_id`` belongs to ``shard``: a stable hash (CRC-32), the same on every
    machine and Python process."""
    i, n = shard
    return n == 1 or zlib.crc32(record_id.encode("utf-8")) % n == i


@dataclass
class AuditSpec:
    """What identifies an audit run; a resumed run must match the one on disk."""

    logs: str
    questions: list[dict]
    shard: list[int] = field(default_factory=lambda: [0, 1])
    oracle: str | None = None
    target: str | None = None
    max_new_tokens: int = 16
    max_positions: int | None = None
    format_version: int = 1

    def check_resume(self, out: Path) -> None:
        """Write ``audit.json`` or, when one is there, refuse a different audit in ``out``."""
        path = out / RUN_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            keys = ("logs", "questions", "shard", "oracle", "target", "max_new_tokens",
                    "max_positions")  # fmt: skip
            for key in keys:
                if old.get(key) != getattr(self, key):
                    raise OracleInputError(
                        f"{out} holds an audit with another {key} ({old.get(key)!r}); resume "
                        "with the same settings or give a new --out"
                    )
            return
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class AuditProgress:
    total: int = 0
    done_before: int = 0  # pairs found on disk at start (resume)
    answered: int = 0
    errors: int = 0


def count_pairs(logs: ActivationLog, questions: Sequence[Question], shard: tuple[int, int]) -> int:
    """How many (record, question) pairs the audit of this shard covers (reads ids only)."""
    return len(questions) * sum(
        1 for s in logs.shards for rid in logs.record_ids(s) if in_shard(rid, shard)
    )


def open_audit(
    logs: ActivationLog,
    questions: Sequence[Question],
    out: Path,
    shard: tuple[int, int],
    batch_size: int,
    max_new_tokens: int,
    max_positions: int | None,
    spec: AuditSpec | None,
) -> ResultsFile:
    """The start that the local and the Ray audit share: check the settings, record the
    audit's spec in ``out`` (or check that a rerun matches it), and open its results with the
    parts that a killed Ray run of this audit left moved in first."""
    if not questions:
        raise OracleInputError("give at least one question")
    if batch_size < 1:
        raise OracleInputError("batch_size must be >= 1")
    if max_positions is not None and max_positions < 1:
        raise OracleInputError("max_positions must be >= 1")
    spec = spec or AuditSpec(
        str(logs.path.resolve()), [asdict(q) for q in questions], list(shard), None, None,
        max_new_tokens, max_positions,
    )  # fmt: skip
    spec.check_resume(out)
    results = ResultsFile(out / RESULTS)
    recovered = move_parts(out / PARTS, results)
    if recovered:
        log.info("%s: %d pairs recovered from the parts of an earlier Ray run", out, recovered)
    return results


def run_audit(
    engine: Engine,
    logs: ActivationLog,
    questions: Sequence[Question],
    out: str | Path,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    max_new_tokens: int = 16,
    spec: AuditSpec | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[AuditProgress], None] | None = None,
    answer: Callable[[list[tuple[Record, Question]]], list[dict]] | None = None,
    max_positions: int | None = None,
) -> AuditProgress:
    """Audit ``logs`` with ``questions``; append each finished pair to ``out/results.jsonl``.

    ``progress(n)`` is called after each batch with the number of pairs written;
    ``on_start`` receives the totals before the first batch. ``answer(pairs)`` turns a batch
    of pairs into result rows (default: :func:`answer_pairs` on ``engine``; a server passes
    one that queues the batch on its engine thread). ``max_positions`` gives the oracle only
    the last K positions of longer records (each record is still read and checked whole).
    Returns the final counts.
    """
    if logs.manifest.d_model != engine.d_model:
        raise OracleInputError(
            f"the log holds activations of size {logs.manifest.d_model} ({logs.manifest.model}); "
            f"the oracle reads size {engine.d_model}"
        )
    out = Path(out)
    results = open_audit(
        logs, questions, out, shard, batch_size, max_new_tokens, max_positions, spec
    )
    done = results.done_pairs()
    state = AuditProgress(count_pairs(logs, questions, shard), len(done))
    if on_start is not None:
        on_start(state)
    pending: list[tuple[Record, Question]] = []

    def todo(rid: str) -> bool:
        return in_shard(rid, shard) and any((rid, q.text) not in done for q in questions)

    if answer is None:

        def answer(pairs: list[tuple[Record, Question]]) -> list[dict]:
            return answer_pairs(engine, pairs, max_new_tokens)

    def flush() -> None:
        rows = answer(list(pending))
        results.append(rows)
        state.answered += len(rows)
        state.errors += sum(1 for r in rows if r["error"])
        pending.clear()
        if progress is not None:
            progress(len(rows))

    for record in logs.iter_records(select=todo):
        acts = record.activations
        if max_positions is not None and acts is not None and acts.shape[0] > max_positions:
            record.activations = acts[-max_positions:].clone()  # frees the whole record
        for q in questions:
            if (record.record_id, q.text) in done:
                continue
            pending.append((record, q))
            if len(pending) >= batch_size:
                flush()
    if pending:
        flush()
    log.info(
        "audit of %s: %d pairs this run (%d errors), %d before",
        logs.path, state.answered, state.errors, state.done_before,
    )  # fmt: skip
    return state


def result_row(record: Record, question: Question, **fields) -> dict:
    row = {
        "record_id": record.record_id,
        "conversation_id": record.conversation_id,
        "layer": record.layer,
        "question": question.text,
        "answer": None,
        "p_yes": None,
        "error": None,
    }
    row.update(fields)
    return row


def answer_pairs(
    engine: Engine, pairs: Sequence[tuple[Record, Question]], max_new_tokens: int
) -> list[dict]:
    """Result rows for ``pairs``: unreadable records and engine failures become error rows.

    The good pairs go to the engine in one call; if that call fails, each pair is retried
    alone so that one bad pair cannot take its batch down with it.
    """
    rows: list[dict | None] = [None] * len(pairs)
    good: list[int] = []
    for k, (record, q) in enumerate(pairs):
        if record.error is not None:
            rows[k] = result_row(record, q, error=record.error)
        else:
            good.append(k)

    def request(k: int) -> AnswerRequest:
        record, q = pairs[k]
        return AnswerRequest(
            record.activations, q.text, record.layer, max_new_tokens, yes_no=q.yes_no
        )

    try:
        answers = engine.answer([request(k) for k in good]) if good else []
    except Exception as exc:  # noqa: BLE001 - isolate the failing pair(s) below
        log.warning("a batch failed (%s); retrying its pairs one by one", exc)
        answers = []
        for k in good:
            try:
                answers.append(engine.answer([request(k)])[0])
            except Exception as one:  # noqa: BLE001 - an error row, and the run goes on
                answers.append(f"{type(one).__name__}: {one}")
    for k, ans in zip(good, answers, strict=True):
        record, q = pairs[k]
        if isinstance(ans, str):
            rows[k] = result_row(record, q, error=ans)
        else:
            rows[k] = result_row(record, q, answer=ans.text, p_yes=ans.p_yes)
    return rows  # type: ignore[return-value]
