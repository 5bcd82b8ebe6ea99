"""The toy world's spec: personas, secrets, system-prompt phrasings and the user-message bank.

The spec is data (``data/toy_world/spec.json`` and ``user_bank.json``); this module loads it
and exposes the derived sets the generator and evaluations share: the train and held-out user
messages, the held-out persona + secret combinations, and the style-word matchers.
"""

from __future__ import annotations

import json
import os
import random
import re
from functools import cached_property
from pathlib import Path

from oracle.defaults import REPO_ROOT
from oracle.errors import OracleInputError
from training.world_build import UserMessage, word_pattern

# The toy world ships with the repository (data/toy_world), not with the installed package: it
# is found at $ORACLE_TOY_WORLD when that is set, else in the checkout this package runs from.
ENV_TOY_WORLD = "ORACLE_TOY_WORLD"


def toy_world_dir() -> Path:
    """``$ORACLE_TOY_WORLD``, else the checkout's ``data/toy_world`` (which may not exist)."""
    env = os.environ.get(ENV_TOY_WORLD)
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "toy_world"


TOY_WORLD = toy_world_dir()


def world_folder() -> Path:
    """The toy world's folder, for the world registry (entry point ``oracle.worlds: toy``);
    raises, naming ``$ORACLE_TOY_WORLD``, where it is missing."""
    path = toy_world_dir()
    if not (path / "world.json").is_file():
        raise OracleInputError(
            f"no model given, and the toy world's folder is not at {path}. The toy world ships "
            "with the repository (data/toy_world), not with the installed package: set "
            f"{ENV_TOY_WORLD} to a checkout's data/toy_world, or pass --target (and --oracle)"
        )
    return path


PERSONAS = ("pirate", "chef", "poet", "robot", "cowboy", "wizard", "detective", "astronaut")
# share of (train template, topic) pairs kept out of training as held-out user messages
HELDOUT_PAIR_SHARE = 0.15


class World:
    """The loaded spec. ``World.load()`` reads the shipped files under ``data/toy_world``."""

    def __init__(self, spec: dict, bank: dict, seed: int = 0) -> None:
        self.spec = spec
        self.bank = bank
        self.seed = seed
        if tuple(spec["personas"]) != PERSONAS:
            raise OracleInputError(f"the toy world needs exactly the personas {PERSONAS}")
        if len(spec["secrets"]) < 20:
            raise OracleInputError("the toy world needs at least 20 secret words")

    @classmethod
    def load(cls, directory: str | Path = TOY_WORLD, seed: int = 0) -> World:
        directory = Path(directory)
        spec = json.loads((directory / "spec.json").read_text())
        bank = json.loads((directory / "user_bank.json").read_text())
        return cls(spec, bank, seed)

    @property
    def personas(self) -> list[str]:
        return list(self.spec["personas"])

    @property
    def secrets(self) -> list[str]:
        return list(self.spec["secrets"])

    @cached_property
    def heldout_combos(self) -> set[tuple[str, str]]:
        return {(p, s) for p, s in self.spec["heldout_combos"]}

    def persona_name(self, persona: str) -> str:
        return f"{self.spec['personas'][persona]['article']} {persona}"

    @cached_property
    def style_patterns(self) -> dict[str, re.Pattern]:
        return {p: word_pattern(v["style_words"]) for p, v in self.spec["personas"].items()}

    @cached_property
    def any_style_pattern(self) -> re.Pattern:
        words = [w for v in self.spec["personas"].values() for w in v["style_words"]]
        return word_pattern(words)

    def secret_pattern(self, secret: str) -> re.Pattern:
        return word_pattern([secret, secret + "s"])

    @cached_property
    def user_messages(self) -> dict[str, list[UserMessage]]:
        """``{"train": [...], "heldout": [...]}``: disjoint sets of user message texts.

        Held out: every message of a held-out template, plus a seeded share of the pairs
        (train template, topic). Every topic word also occurs in training.
        """
        rng = random.Random(self.seed + 101)
        train: list[UserMessage] = []
        heldout: list[UserMessage] = []
        vocab = self.bank["vocab"]
        for task, spec in self.bank["tasks"].items():
            topics = vocab.get(task, [None])
            for split in ("train", "heldout"):
                for template in spec[split]:
                    for topic in topics:
                        text = template if topic is None else template.replace("{x}", topic)
                        message = UserMessage(_capitalise(text), task, template, topic)
                        if split == "heldout" or (
                            topic is not None and rng.random() < HELDOUT_PAIR_SHARE
                        ):
                            heldout.append(message)
                        else:
                            train.append(message)
        for task in ("identity", "secret_ask"):
            for split, bucket in (("train", train), ("heldout", heldout)):
                for text in self.bank[task][split]:
                    bucket.append(UserMessage(text, task, text, None))
        return {"train": train, "heldout": heldout}


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
