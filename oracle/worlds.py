"""Worlds: a target and its trained oracle that the commands use when asked by name
(``--world toy`` / ``--world smol``), so that no model path needs typing.

A world is a data folder with a manifest, ``world.json``::

    {"name": "smol", "description": "one line about it",
     "target": {"model": "smollm2-135m" | "path": "target", "fingerprint": {...}},
     "oracle": "oracle", "suites": ["suite.jsonl"], "read_layers": [28],
     "positions": "non_system", "build": "the command that makes its oracle",
     "ablations": "ablations"}

(paths relative to the folder; ``model`` is a known model's name, fetched once; ``ablations``,
optional, is a folder of ablation oracles, each with an ``ablation.json``, that ``oracle eval``
scores beside the world's own oracle). Worlds join
through the entry-point group ``oracle.worlds``: each entry point names an object that is the
world's folder, or a function returning it (raising :class:`OracleInputError`, saying how to
get it, where the folder is missing). This module knows no world by name; the one default,
the world used when no model is given at all, is a setting (``$ORACLE_DEFAULT_WORLD``).

:func:`resolve` turns ``--world``/``--target``/``--oracle`` into the models to load (the same
rule for ``oracle ask|serve|audit|steer|eval``) and :func:`world_of` names the world served.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from oracle.errors import OracleInputError
from oracle.known_models import resolve_model

log = logging.getLogger(__name__)

GROUP = "oracle.worlds"
MANIFEST = "world.json"
ENV_DEFAULT_WORLD = "ORACLE_DEFAULT_WORLD"
DEFAULT_WORLD = "toy"  # the offline default: the world that ships with the repository

# The --world option's help, one text for every command that takes it.
WORLD_HELP = (
    "A named world: toy (the default with no model given) or smol (SmolLM2-135M-Instruct; "
    "`oracle models fetch smollm2-135m` once), or any world an installed package registers "
    "(entry-point group oracle.worlds). --target/--oracle override its parts."
)


@dataclass(frozen=True)
class WorldSpec:
    """A world, as its manifest describes it: where its target, oracle and suites are."""

    name: str
    description: str
    folder: Path
    oracle: str = "oracle"
    target_model: str | None = None  # a known model's name (fetched once) ...
    target_path: str | None = None  # ... or a folder relative to the world's
    fingerprint: dict = field(default_factory=dict)
    suites: tuple[str, ...] = ()
    read_layers: tuple[int, ...] = ()
    positions: str | None = None
    build: str = ""
    ablations: str | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> WorldSpec:
        """The world described by ``folder/world.json`` (checked)."""
        path = Path(folder) / MANIFEST
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise OracleInputError(f"cannot read the world manifest {path}: {exc}") from None
        target = m.get("target") or {}
        if not isinstance(m.get("name"), str) or not m["name"]:
            raise OracleInputError(f"{path}: 'name' must be a non-empty string")
        if ("model" in target) == ("path" in target):
            raise OracleInputError(f"{path}: 'target' takes exactly one of 'model' or 'path'")
        return cls(
            name=m["name"],
            description=str(m.get("description", "")),
            folder=Path(folder),
            oracle=str(m.get("oracle", "oracle")),
            target_model=target.get("model"),
            target_path=target.get("path"),
            fingerprint=dict(target.get("fingerprint") or {}),
            suites=tuple(str(s) for s in m.get("suites", [])),
            read_layers=tuple(int(x) for x in m.get("read_layers", [])),
            positions=m.get("positions"),
            build=str(m.get("build", "")),
            ablations=m.get("ablations"),
        )

    def oracle_dir(self) -> Path:
        """The world's oracle directory; a world whose oracle is not built says how."""
        path = self.folder / self.oracle
        if not (path / "oracle_config.json").is_file():
            how = f": train it with `{self.build}`" if self.build else ""
            raise OracleInputError(f"the {self.name} world's oracle is not at {path}{how}")
        return path

    def suite_files(self) -> list[Path]:
        """The world's held-out suite files, as its manifest names them."""
        return [self.folder / s for s in self.suites]

    def ablations_dir(self) -> Path | None:
        """The world's folder of ablation oracles, where it names one that is there."""
        if self.ablations is None:
            return None
        path = self.folder / self.ablations
        return path if path.is_dir() else None

    def suite(self) -> Path | None:
        """The world's first suite file, or None."""
        files = self.suite_files()
        return files[0] if files else None

    def target(self) -> str:
        """The target model (a path); a world whose model must be fetched says how."""
        if self.target_model is not None:
            return resolve_model(self.target_model)
        path = self.folder / (self.target_path or "")
        if not (path / "config.json").is_file():
            raise OracleInputError(f"the {self.name} world's target is not at {path}")
        return str(path)


def sync_manifest(folder: Path) -> None:
    """Rewrite ``folder/world.json``'s read layers, positions and target fingerprint from the
    world's oracle config: a build calls it after shipping a new oracle, so that the manifest
    says what the oracle was trained with."""
    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text())
    config = json.loads(
        (Path(folder) / manifest.get("oracle", "oracle") / "oracle_config.json").read_text()
    )
    manifest["read_layers"] = config["read_layers"]
    manifest["positions"] = config["positions"]
    manifest.setdefault("target", {})["fingerprint"] = config["fingerprint"]
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _registered() -> dict[str, object]:
    """{world name: its entry point}, from every installed package."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def world_names() -> list[str]:
    return sorted(_registered())


def get_world(name: str) -> WorldSpec:
    """The world registered as ``name``; a folder that is missing raises, saying how to get it."""
    registered = _registered()
    if name not in registered:
        raise OracleInputError(f"unknown world {name!r}; choose from {sorted(registered)}")
    found = registered[name].load()  # type: ignore[attr-defined]
    folder = Path(found() if callable(found) else found)
    if not (folder / MANIFEST).is_file():
        raise OracleInputError(
            f"the {name} world has no {MANIFEST} at {folder}: worlds ship with the repository's "
            "data folder (or the package that registers them), not with this package"
        )
    spec = WorldSpec.from_folder(folder)
    if spec.name != name:
        raise OracleInputError(
            f"{folder / MANIFEST} names world {spec.name!r}, registered as {name!r}"
        )
    return spec


def find_world(name: str | None) -> WorldSpec | None:
    """The world registered as ``name``, or None (no name, an unknown one, or its folder
    missing)."""
    if name is None:
        return None
    try:
        return get_world(name)
    except OracleInputError as exc:
        log.debug("world %s not found: %s", name, exc)
        return None


def worlds() -> dict[str, WorldSpec]:
    """Every registered world whose folder is here (the others are logged and left out)."""
    found = {name: find_world(name) for name in world_names()}
    return {name: spec for name, spec in found.items() if spec is not None}


def default_world() -> str:
    """The world used when no model is given at all (``$ORACLE_DEFAULT_WORLD``, else toy)."""
    return os.environ.get(ENV_DEFAULT_WORLD) or DEFAULT_WORLD


def resolve(
    world: str | None, target: str | None, oracle: str | Path | None
) -> tuple[str | None, str | None]:
    """(target, oracle directory) to load. An explicit ``target`` or ``oracle`` wins over the
    world's; ``world`` fills in the oracle that is not given (its target is then the oracle's
    own base model); nothing given at all is the default world."""
    if world is None and target is None and oracle is None:
        world = default_world()
    if world is not None and oracle is None:
        oracle = get_world(world).oracle_dir()
    elif world is not None:
        get_world(world)  # a bad name fails even when both models are given
    return target, str(oracle) if oracle is not None else None


def world_of(world: str | None, target: str | None, oracle: str | Path | None) -> str | None:
    """The name of the world these options serve: ``world`` if given, the default world when
    no model is given, a world whose shipped oracle ``oracle`` is (with no other target), else
    None (a user's own models)."""
    if world is not None:
        return world
    if target is None and oracle is None:
        return default_world()
    if oracle is None or target is not None:
        return None
    found = Path(oracle).resolve()
    for name, spec in worlds().items():
        if (spec.folder / spec.oracle).resolve() == found:
            return name
    return None
