"""Worlds: a target and its trained oracle that the commands use when asked by name
(``--world toy`` / ``--world smol``), so that no model path needs typing.

- ``toy``: the toy world shipped in ``data/toy_world`` (the default; needs no fetch);
- ``smol``: SmolLM2-135M-Instruct (``oracle models fetch smollm2-135m`` once) with the oracle
  shipped in ``data/smol_world/oracle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oracle.defaults import REPO_ROOT, default_oracle, default_target
from oracle.errors import OracleInputError
from oracle.known_models import resolve_model

SMOL_WORLD = REPO_ROOT / "data" / "smol_world"


@dataclass(frozen=True)
class WorldSpec:
    """A named world: where its target and oracle are, and one line about it."""

    name: str
    description: str

    def oracle_dir(self) -> Path:
        if self.name == "toy":
            return default_oracle()
        path = SMOL_WORLD / "oracle"
        if not (path / "oracle_config.json").is_file():
            raise OracleInputError(
                f"the {self.name} world's oracle is not at {path}: train it with "
                "`oracle smol-world build` (see data/smol_world/README.md)"
            )
        return path

    def target(self) -> str:
        """The target model (a path); a world whose model must be fetched says how."""
        if self.name == "toy":
            return default_target()
        return resolve_model("smollm2-135m")


WORLDS: dict[str, WorldSpec] = {
    "toy": WorldSpec("toy", "the toy world: a 5M-parameter target trained here (default)"),
    "smol": WorldSpec("smol", "SmolLM2-135M-Instruct, a real pretrained chat model"),
}


def get_world(name: str) -> WorldSpec:
    if name not in WORLDS:
        raise OracleInputError(f"unknown world {name!r}; choose from {sorted(WORLDS)}")
    return WORLDS[name]
