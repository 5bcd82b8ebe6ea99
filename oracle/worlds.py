"""Worlds: a target and its trained oracle that the commands use when asked by name
(``--world toy`` / ``--world smol``), so that no model path needs typing.

- ``toy``: the toy world shipped in ``data/toy_world`` (the default; needs no fetch);
- ``smol``: SmolLM2-135M-Instruct (``oracle models fetch smollm2-135m`` once) with the oracle
  shipped in ``data/smol_world/oracle``.

:func:`resolve` turns ``--world``/``--target``/``--oracle`` into the models to load (the same
rule for ``oracle ask|serve|audit|steer|eval``) and :func:`world_of` names the world served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oracle.defaults import REPO_ROOT, default_oracle, default_target, toy_world_dir
from oracle.errors import OracleInputError
from oracle.known_models import resolve_model

SMOL_WORLD = REPO_ROOT / "data" / "smol_world"

# The --world option's help, one text for every command that takes it.
WORLD_HELP = (
    "A named world: toy (the default with no model given) or smol (SmolLM2-135M-Instruct; "
    "`oracle models fetch smollm2-135m` once). --target/--oracle override its parts."
)


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

    def suite(self) -> Path | None:
        """The world's held-out suite file (the toy world builds its suites in code: None)."""
        return None if self.name == "toy" else SMOL_WORLD / "suite.jsonl"

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


def resolve(
    world: str | None, target: str | None, oracle: str | Path | None
) -> tuple[str | None, str | None]:
    """(target, oracle directory) to load. An explicit ``target`` or ``oracle`` wins over the
    world's; ``world`` fills in the oracle that is not given (its target is then the oracle's
    own base model); nothing given at all is the toy world."""
    if world is None and target is None and oracle is None:
        world = "toy"
    if world is not None and oracle is None:
        oracle = get_world(world).oracle_dir()
    elif world is not None:
        get_world(world)  # a bad name fails even when both models are given
    return target, str(oracle) if oracle is not None else None


def world_of(world: str | None, target: str | None, oracle: str | Path | None) -> str | None:
    """The name of the world these options serve: ``world`` if given, the toy world when no
    model is given, a world whose shipped oracle ``oracle`` is (with no other target), else
    None (a user's own models)."""
    if world is not None:
        return world
    if target is None and oracle is None:
        return "toy"
    if oracle is None or target is not None:
        return None
    found = Path(oracle).resolve()
    for name in WORLDS:
        shipped = toy_world_dir() / "oracle" if name == "toy" else SMOL_WORLD / "oracle"
        if shipped.resolve() == found:
            return name
    return None
