"""Read rows of training data: a file (JSONL/JSON/Parquet/CSV), a saved Arrow dataset or a hub
id. The config's sources and mixes are in :mod:`training.sources`."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset, load_from_disk

from oracle.errors import OracleInputError

FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_rows(source: str, split: str = "train") -> Dataset:
    """A ``Dataset`` from a local file, a ``save_to_disk`` directory, or a hub id."""
    path = Path(source).expanduser()
    if path.is_file():
        kind = FILE_KINDS.get(path.suffix)
        if kind is None:
            raise OracleInputError(
                f"data file {source!r}: unknown extension; use one of {sorted(FILE_KINDS)}"
            )
        return load_dataset(kind, data_files=str(path), split="train")
    if path.is_dir():
        return load_from_disk(str(path))
    if source.startswith((".", "/")) or source.count("/") > 1:
        raise OracleInputError(f"data path {source!r} does not exist")
    try:
        return load_dataset(source, split=split)
    except Exception as exc:  # the hub is unreachable offline: say so plainly
        raise OracleInputError(f"cannot load dataset {source!r}: {exc}") from None
