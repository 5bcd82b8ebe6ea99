"""Dataset builders: each returns a ``datasets.Dataset`` of schema rows (``training/schema.py``).

Registered by name, so that a config's ``train_data`` can name them (``builder: persona_qa``).
"""

from __future__ import annotations

from collections.abc import Callable

from datasets import Dataset

from training.builders.classification import classification_qa
from training.builders.context import context_prediction
from training.builders.mix import mix
from training.builders.persona import persona_qa

BUILDERS: dict[str, Callable[..., Dataset]] = {
    "persona_qa": persona_qa,
    "classification": classification_qa,
    "context_prediction": context_prediction,
}

__all__ = ["BUILDERS", "classification_qa", "context_prediction", "mix", "persona_qa"]
