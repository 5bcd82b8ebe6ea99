"""Result parts: Parquet files that many workers write side by side into one directory.

A distributed audit (:mod:`audit.ray_runner`) has each worker write the rows of every batch it
answers as one Parquet file in ``OUT/parts/``, atomically (a temp file, synced, then renamed),
so a part on disk is always whole: a worker or driver killed mid-write leaves at most a
``*.tmp`` file, which readers ignore. A batch retried after a failure may be written twice;
:func:`absorb_parts` keeps the first row of each (record, question) pair, so that
``results.jsonl`` holds every pair exactly once, as the local audit's does.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from audit.results import RESULT_FIELDS, RESULT_SCHEMA, ResultsFile

log = logging.getLogger(__name__)

PARTS = "parts"


def write_part(directory: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` (result rows) as one new part in ``directory``; returns its path.

    The name is random, so writers on many machines never collide; the file appears under
    its final name only once it is complete and synced.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [{k: r.get(k) for k in RESULT_FIELDS} for r in rows], RESULT_SCHEMA
    )
    path = directory / f"{uuid.uuid4().hex}.parquet"
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def part_files(directory: str | Path) -> list[Path]:
    """The complete parts of ``directory``, oldest first (by modification time, then name)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob("*.parquet") if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _read(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    try:
        return pq.read_table(path, columns=columns, use_threads=False)
    except (OSError, pa.ArrowException) as exc:  # not ours, or damaged after the fact
        log.warning("result part %s is unreadable (%s); ignored", path, exc)
        return None


def absorb_parts(files: Iterable[Path], results: ResultsFile) -> tuple[int, int]:
    """Append to ``results`` the rows of the parts ``files`` whose pair it lacks; returns
    (appended, duplicates skipped). Running it again appends nothing."""
    done = results.done_pairs()
    added = dupes = 0
    for path in files:
        table = _read(path)
        if table is None:
            continue
        fresh = []
        for row in table.to_pylist():
            key = (row["record_id"], row["question"])
            if key in done:
                dupes += 1
                continue
            done.add(key)
            fresh.append(row)
        added += results.append(fresh)
    return added, dupes


def move_parts(directory: str | Path, results: ResultsFile) -> int:
    """Move the parts of ``directory`` into ``results`` (synced), then delete them and any
    unfinished part; returns the pairs added. Both audits call it before they read the
    finished pairs, so either resumes a run of the other."""
    directory = Path(directory)
    files = part_files(directory)
    added, dupes = absorb_parts(files, results)
    if dupes:
        log.info(
            "%s: %d pairs were answered twice (a retried batch); kept the first", directory, dupes
        )
    for path in files:
        path.unlink(missing_ok=True)
    for tmp in directory.glob("*.tmp") if directory.is_dir() else []:
        tmp.unlink(missing_ok=True)  # a part whose writer was killed
    return added
