"""The SmolLM2 world's spec: personas, secrets, system-prompt phrasings and the user-message bank.

The spec is data (``data/smol_world/spec.json``); this module loads it and derives the sets the
generator, the oracle rows and the evaluation share: train and held-out user messages, train and
held-out personas (held-out ones never appear in training), the held-out persona + secret
combinations, and the system prompts themselves.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from oracle.defaults import REPO_ROOT
from oracle.errors import OracleInputError
from training.world_build import UserMessage, word_pattern

SMOL_WORLD = REPO_ROOT / "data" / "smol_world"


def world_folder() -> Path:
    """The SmolLM2 world's folder, for the world registry (entry point ``oracle.worlds:
    smol``)."""
    return SMOL_WORLD


# share of (train template, topic) pairs kept out of training as held-out user messages
HELDOUT_PAIR_SHARE = 0.15


@dataclass(frozen=True)
class Persona:
    """One persona: its name ("pirate"), article, style instruction, strength and aliases."""

    name: str
    article: str
    instruction: str
    strength: str
    aliases: tuple[str, ...]
    style_words: tuple[str, ...]
    heldout: bool

    @property
    def with_article(self) -> str:
        return f"{self.article} {self.name}"


class SmolWorld:
    """The loaded spec. ``SmolWorld.load()`` reads ``data/smol_world/spec.json``."""

    def __init__(self, spec: dict, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self.personas = [
            Persona(
                p["name"],
                p["article"],
                p["instruction"],
                p["strength"],
                tuple(p["aliases"]),
                tuple(p["style_words"]),
                bool(p["heldout"]),
            )
            for p in spec["personas"]
        ]
        self.by_name = {p.name: p for p in self.personas}
        if len(self.train_personas) < 8 or len(self.heldout_personas) < 4:
            raise OracleInputError("the world needs >= 8 train personas and >= 4 held-out ones")
        if len(self.secrets) < 20:
            raise OracleInputError("the world needs at least 20 secret words")

    @classmethod
    def load(cls, directory: str | Path = SMOL_WORLD, seed: int = 0) -> SmolWorld:
        return cls(json.loads((Path(directory) / "spec.json").read_text()), seed)

    # ------------------------------------------------------------------ sets
    @property
    def train_personas(self) -> list[Persona]:
        return [p for p in self.personas if not p.heldout]

    @property
    def heldout_personas(self) -> list[Persona]:
        return [p for p in self.personas if p.heldout]

    @property
    def secrets(self) -> list[str]:
        return list(self.spec["secrets"])

    @property
    def default_system(self) -> str:
        return self.spec["neutral_prompts"]["default"]

    @cached_property
    def heldout_combos(self) -> set[tuple[str, str]]:
        return {(p, s) for p, s in self.spec["heldout_combos"]}

    def persona_prompt(self, persona: Persona, phrasing: str) -> str:
        return phrasing.format(a=persona.with_article, instruction=persona.instruction).strip()

    def secret_prompt(self, secret: str, phrasing: str) -> str:
        return phrasing.format(w=secret)

    @cached_property
    def style_pattern(self) -> re.Pattern:
        """Any persona's name, alias or style word (a reply matching it may give the persona)."""
        words = [w for p in self.personas for w in (*p.aliases, *p.style_words)]
        return word_pattern(words)

    def secret_pattern(self, secret: str) -> re.Pattern:
        return word_pattern([secret, secret + "s"])

    @cached_property
    def user_messages(self) -> dict[str, list[UserMessage]]:
        """``{"train": [...], "heldout": [...]}``: disjoint sets of user messages.

        Held out: every message of a held-out template or standalone list, plus a seeded
        share of the (train template, topic) pairs.
        """
        rng = random.Random(self.seed + 101)
        bank = self.spec["user_bank"]
        out: dict[str, list[UserMessage]] = {"train": [], "heldout": []}
        for task, spec in bank["tasks"].items():
            topics = bank["vocab"].get(task, [None])
            for split in ("train", "heldout"):
                for template in spec[split]:
                    for topic in topics:
                        text = template if topic is None else template.replace("{x}", topic)
                        message = UserMessage(text[:1].upper() + text[1:], task, template, topic)
                        held = split == "heldout" or (
                            topic is not None and rng.random() < HELDOUT_PAIR_SHARE
                        )
                        out["heldout" if held else "train"].append(message)
        for split in ("train", "heldout"):
            for text in bank["standalone"][split]:
                out[split].append(UserMessage(text, "standalone", text, None))
        seen = {m.text for m in out["train"]}
        out["heldout"] = [m for m in out["heldout"] if m.text not in seen]
        return out
