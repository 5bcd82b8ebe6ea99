"""Audit results on disk: an append-only JSONL file, synced after every batch.

Each line is one (record, question) pair::

    {"record_id": ..., "conversation_id": ..., "layer": 1, "question": ...,
     "answer": "..." | null, "p_yes": 0.93 | null, "error": null | "why it failed"}

A process killed mid-write (``kill -9``) can leave a torn last line; :class:`ResultsFile` cuts
it off when it opens the file, so that the pairs on disk are exactly the ones finished, and a
resumed run appends after them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

RESULT_FIELDS = ("record_id", "conversation_id", "layer", "question", "answer", "p_yes", "error")


class ResultsFile:
    """``results.jsonl`` of one audit output directory, opened for appending.

    >>> results = ResultsFile(Path("out/results.jsonl"))
    >>> done = results.done_pairs()          # {(record_id, question), ...}
    >>> results.append([{"record_id": "c1@L1", "question": "Q?", "answer": "Yes", ...}])
    """

    def __init__(self, path: Path, repair: bool = True) -> None:
        """``repair=False`` opens for reading only (safe while another thread appends)."""
        self.path = Path(path)
        if repair:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair()

    def _repair(self) -> None:
        """Drop a torn last line (no newline, or not valid JSON) left by a killed writer."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            keep = data.rfind(b"\n") + 1  # lines are written whole: a tail without \n is torn
            last_start = data.rfind(b"\n", 0, max(keep - 1, 0)) + 1
            if keep:
                try:
                    json.loads(data[last_start:keep])
                except (json.JSONDecodeError, UnicodeDecodeError):
                    keep = last_start
            if keep != len(data):
                log.warning("%s: dropping a torn last line (%d bytes)", self.path, len(data) - keep)
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def rows(self) -> Iterator[dict]:
        """Every complete row on disk, in order; a last line without its newline (a write in
        progress, or torn) is left out; other lines that do not parse are logged and skipped."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.endswith("\n") or not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s:%d is not valid JSON; ignored", self.path, n)

    def done_pairs(self) -> set[tuple[str, str]]:
        """The (record_id, question) pairs already on disk."""
        return {(r["record_id"], r["question"]) for r in self.rows()}

    def append(self, rows: Iterable[dict]) -> int:
        """Append rows (one JSON line each) and sync them to disk; returns how many."""
        text = "".join(
            json.dumps({k: row.get(k) for k in RESULT_FIELDS}, ensure_ascii=False) + "\n"
            for row in rows
        )
        if not text:
            return 0
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return text.count("\n")


def unique_rows(rows: Iterable[dict]) -> Iterator[dict]:
    """Rows with one per (record_id, question): the first one seen wins (streamed; only the
    keys are held)."""
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row["record_id"], row["question"])
        if key not in seen:
            seen.add(key)
            yield row


RESULT_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("conversation_id", pa.string()),
        ("layer", pa.int32()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("p_yes", pa.float64()),
        ("error", pa.string()),
    ]
)


def write_parquet(rows: Iterable[dict], path: Path, chunk: int = 50_000) -> int:
    """Write ``rows`` as Parquet (``results.parquet``, for ``datasets``/pandas users), in row
    groups of ``chunk`` so that memory stays bounded; returns the number of rows."""
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with pq.ParquetWriter(tmp, RESULT_SCHEMA) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append({k: row.get(k) for k in RESULT_FIELDS})
            if len(batch) == chunk:
                writer.write_table(pa.Table.from_pylist(batch, RESULT_SCHEMA))
                n, batch = n + len(batch), []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, RESULT_SCHEMA))
            n += len(batch)
    tmp.replace(path)
    return n
