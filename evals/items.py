"""Evaluation items and suites: conversations with a hidden label and the question about it.

A suite is one question ("What persona is the assistant playing?") with a closed label set,
a ``train`` list (used only by the linear probe) and a ``test`` list whose items carry a
``split`` tag (``heldout_user``: user messages never seen in training; ``unseen_combo``: a
persona and secret never seen together in training; ...). On disk a suite is one JSON file::

    {"name": "persona", "question": "...", "labels": ["pirate", ...],
     "aliases": {"pirate": ["buccaneer"]},
     "train": [{"messages": [...], "label": "pirate", "split": "train"}, ...],
     "test":  [{"messages": [...], "label": "chef", "split": "heldout_user"}, ...]}
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from oracle.errors import OracleInputError
from oracle.inputs import TargetInput

# Suites whose label lives in the user's own turn: the no-system control does not apply.
VISIBLE_LABEL_SUITES = ("context",)


@dataclass
class EvalItem:
    """One conversation (system prompt included) and the label the question asks for."""

    messages: list[dict[str, str]]
    label: str
    split: str = "test"
    meta: dict = field(default_factory=dict)

    def without_system(self) -> list[dict[str, str]]:
        """The conversation as it goes without a system prompt (the ``no_system`` control).

        ``meta["no_system_messages"]``, when the suite gives it, is the counterfactual: the same
        user turn answered with no system prompt (so the reply carries no persona style).
        Otherwise the system messages are dropped and the rest kept as is.
        """
        if self.meta.get("no_system_messages"):
            return list(self.meta["no_system_messages"])
        kept = [m for m in self.messages if m["role"] != "system"]
        if not kept:
            raise OracleInputError("an item without its system prompt has no message left")
        return kept


@dataclass
class Suite:
    """A question, its label set, and train/test items."""

    name: str
    question: str
    labels: list[str]
    train: list[EvalItem]
    test: list[EvalItem]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    # False when the label is in the visible turns (the no-system control then does not apply)
    hidden_in_system: bool = True

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise OracleInputError(f"suite {self.name!r}: the question is empty")
        if len(set(self.labels)) < 2:
            raise OracleInputError(f"suite {self.name!r}: needs at least two labels")
        for part in ("train", "test"):
            for i, item in enumerate(getattr(self, part)):
                if item.label not in self.labels:
                    raise OracleInputError(
                        f"suite {self.name!r}, {part} item {i}: label {item.label!r} is not "
                        f"one of {self.labels}"
                    )
                TargetInput(messages=item.messages)  # validates roles and contents
        if not self.test:
            raise OracleInputError(f"suite {self.name!r} has no test item")

    @property
    def splits(self) -> list[str]:
        return sorted({item.split for item in self.test})

    def subsample(self, n_test: int | None, n_train: int | None, seed: int) -> Suite:
        """A seeded random subsample (never a stride: a stride can pick one kind only)."""
        rng = random.Random(seed)

        def pick(items: list[EvalItem], n: int | None) -> list[EvalItem]:
            if n is None or n >= len(items):
                return list(items)
            return rng.sample(items, n)

        return Suite(
            self.name,
            self.question,
            self.labels,
            pick(self.train, n_train),
            pick(self.test, n_test),
            self.aliases,
            self.hidden_in_system,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict) -> Suite:
        missing = [k for k in ("name", "question", "labels", "test") if k not in data]
        if missing:
            raise OracleInputError(f"a suite file lacks the field(s) {missing}")
        return cls(
            name=data["name"],
            question=data["question"],
            labels=list(data["labels"]),
            train=[EvalItem(**x) for x in data.get("train", [])],
            test=[EvalItem(**x) for x in data["test"]],
            aliases={k: list(v) for k, v in data.get("aliases", {}).items()},
            hidden_in_system=bool(data.get("hidden_in_system", True)),
        )

    @classmethod
    def load(cls, path: str | Path) -> Suite:
        path = Path(path)
        if not path.is_file():
            raise OracleInputError(f"suite file {str(path)!r} does not exist")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise OracleInputError(f"{path} is not valid JSON: {exc}") from None
        except TypeError as exc:
            raise OracleInputError(f"{path}: bad item fields: {exc}") from None
