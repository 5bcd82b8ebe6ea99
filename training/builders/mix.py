"""A weighted mix of schema datasets (sampling with replacement to the requested size)."""

from __future__ import annotations

import random

from datasets import Dataset

from oracle.errors import OracleInputError
from training.schema import COLUMNS, check_columns


def _normalise(row: dict) -> dict:
    """Every schema column present (missing ones null), extra columns dropped."""
    return {c: row.get(c) for c in COLUMNS}


def mix(
    parts: list[Dataset], weights: list[float], size: int | None = None, seed: int = 0
) -> Dataset:
    """Draw ``size`` rows (default: the parts' total) with part i chosen w.p. weight_i / sum.

    Within a part rows are drawn without replacement until it runs out, then reused.
    """
    if not parts or len(parts) != len(weights):
        raise OracleInputError("mix needs one weight per dataset and at least one dataset")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise OracleInputError(f"mix weights must be >= 0 with a positive sum, got {weights}")
    for i, part in enumerate(parts):
        if len(part) == 0:
            raise OracleInputError(f"mix part {i} is empty")
        check_columns(list(part.column_names), f"mix part {i}")
    rng = random.Random(seed)
    size = size if size is not None else sum(len(p) for p in parts)
    orders = [rng.sample(range(len(p)), len(p)) for p in parts]
    cursors = [0] * len(parts)
    rows = []
    for _ in range(size):
        i = rng.choices(range(len(parts)), weights=weights)[0]
        index = orders[i][cursors[i] % len(parts[i])]
        cursors[i] += 1
        rows.append(_normalise(parts[i][index]))
    return Dataset.from_list(rows)
