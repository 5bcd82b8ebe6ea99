"""The config's ``train_data``/``eval_data``: a source, or a weighted mix of sources.

A source is either a string (a path or hub id) or a mapping::

    {path: my.jsonl}                                   # a schema dataset
    {builder: persona_qa, n: 2000, personas: p.jsonl}  # a builder with its arguments
    ... and any of them may carry weight: 0.5 inside a list (the weighted mix)
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from oracle.errors import OracleInputError
from training.builders import BUILDERS
from training.builders.mix import mix
from training.data import load_rows


def build_source(spec: str | dict[str, Any], seed: int, model: str | None = None) -> Dataset:
    """One source of the mix (without its weight); ``model`` is the default tokenizer."""
    if isinstance(spec, str):
        return load_rows(spec)
    if not isinstance(spec, dict):
        raise OracleInputError(f"a data source must be a path or a mapping, got {spec!r}")
    spec = {k: v for k, v in spec.items() if k != "weight"}
    if "path" in spec:
        return load_rows(str(spec["path"]), spec.get("split", "train"))
    if "builder" in spec:
        name = spec.pop("builder")
        if name not in BUILDERS:
            raise OracleInputError(f"unknown builder {name!r}; choose from {sorted(BUILDERS)}")
        spec.setdefault("seed", seed)
        if name == "context_prediction" and model is not None:
            spec.setdefault("tokenizer", model)
        return BUILDERS[name](**spec)
    raise OracleInputError(f"a data source needs 'path' or 'builder', got keys {sorted(spec)}")


def load_data(
    spec: str | dict | list, seed: int = 0, size: int | None = None, model: str | None = None
) -> Dataset:
    """A source, or a list of sources mixed by their ``weight`` (default 1 each)."""
    if not isinstance(spec, list):
        return build_source(spec, seed, model)
    parts = [build_source(s, seed, model) for s in spec]
    weights = [float(s.get("weight", 1.0)) if isinstance(s, dict) else 1.0 for s in spec]
    return mix(parts, weights, size=size, seed=seed)
