"""Read conversations to capture: JSONL (one ``{"id": ..., "messages": [...]}`` per line) or a
``datasets`` file (Parquet, Arrow, JSON, or a ``save_to_disk`` directory), streamed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from oracle.errors import OracleInputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
DATASETS_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".csv": "csv"}


def read_conversations(path: str | Path, skipped: list[str] | None = None) -> Iterator[dict]:
    """Yield ``{"id": str, "messages": list, ...}`` dicts from ``path``, in file order.

    A line or row without an id or with no messages is logged, noted in ``skipped`` (when
    given) and left out; a repeated id is left out the same way (record ids must be unique).
    """
    path = Path(path)
    if not path.exists():
        raise OracleInputError(f"conversations file {str(path)!r} does not exist")
    seen: set[str] = set()
    for where, row in _rows(path):
        problem = _problem(row)
        if problem is None and str(row["id"]) in seen:
            problem = f"repeats id {row['id']!r}"
        if problem is not None:
            log.warning("%s: %s; skipped", where, problem)
            if skipped is not None:
                skipped.append(f"{where}: {problem}")
            continue
        row = dict(row)
        row["id"] = str(row["id"])
        seen.add(row["id"])
        yield row


def _problem(row: object) -> str | None:
    if isinstance(row, str):  # what _rows yields for a line that is not JSON
        return row
    if not isinstance(row, dict):
        return "not a JSON object"
    if row.get("id") is None or str(row["id"]) == "":
        return "no 'id'"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no 'messages' list"
    return None


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    if path.is_file() and path.suffix in JSONL_SUFFIXES:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path.name}:{n}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{path.name}:{n}", f"invalid JSON ({exc})"
        return
    import datasets

    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[next(iter(ds))]
    elif path.suffix in DATASETS_BUILDERS:
        ds = datasets.load_dataset(
            DATASETS_BUILDERS[path.suffix], data_files=str(path), split="train", streaming=True
        )
    else:
        raise OracleInputError(
            f"{path} is neither JSONL ({', '.join(JSONL_SUFFIXES)}) nor a datasets file "
            f"({', '.join(DATASETS_BUILDERS)}) or directory"
        )
    for n, row in enumerate(ds):
        yield f"{path.name}[{n}]", row
