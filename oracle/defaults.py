"""The offline defaults: what runs when no model is named.

The toy world (a 5M-parameter target and its oracle, about 25 MB) ships with the repository
under ``data/toy_world``, not inside the installed package. It is found at
``$ORACLE_TOY_WORLD`` when that is set, else in the checkout this package runs from (an
editable install, or the source tree itself). An installed wheel has no checkout beside it:
set ``ORACLE_TOY_WORLD`` to a checkout's ``data/toy_world``, or name a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from oracle.errors import OracleInputError

ENV_TOY_WORLD = "ORACLE_TOY_WORLD"
# The checkout's root (meaningful for a source tree or an editable install only).
REPO_ROOT = Path(__file__).resolve().parent.parent


def toy_world_dir() -> Path:
    """``$ORACLE_TOY_WORLD``, else the checkout's ``data/toy_world`` (which may not exist)."""
    env = os.environ.get(ENV_TOY_WORLD)
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "toy_world"


TOY_WORLD = toy_world_dir()


def _missing(path: Path, what: str, flags: str) -> OracleInputError:
    return OracleInputError(
        f"no model given, and the toy world's {what} is not at {path}. The toy world ships with "
        "the repository (data/toy_world), not with the installed package: set "
        f"{ENV_TOY_WORLD} to a checkout's data/toy_world, or pass {flags}"
    )


def toy_world_folder() -> Path:
    """The toy world's folder, for the world registry (entry point ``oracle.worlds: toy``);
    raises, naming ``$ORACLE_TOY_WORLD``, where it is missing."""
    path = toy_world_dir()
    if not (path / "world.json").is_file():
        raise _missing(path, "folder", "--target (and --oracle)")
    return path


def default_oracle() -> Path:
    """The toy world's oracle directory (``<toy world>/oracle``)."""
    path = toy_world_dir() / "oracle"
    if not (path / "oracle_config.json").is_file():
        raise _missing(path, "oracle", "--target (and --oracle)")
    return path


def default_target() -> str:
    """The toy world's target model directory (``<toy world>/target``)."""
    path = toy_world_dir() / "target"
    if not (path / "config.json").is_file():
        raise _missing(path, "target", "--model")
    return str(path)
