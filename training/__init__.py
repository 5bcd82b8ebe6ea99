"""Training activation oracles: the example schema, dataset builders and the LoRA trainer.

Public entry points: :class:`TrainConfig` and :func:`train_oracle` (imported lazily, so that
``import training`` stays cheap); the example schema is documented in ``training/schema.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "train_oracle"]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from training.config import TrainConfig

        return TrainConfig
    if name == "train_oracle":
        from training.train import train_oracle

        return train_oracle
    raise AttributeError(f"module 'training' has no attribute {name!r}")
