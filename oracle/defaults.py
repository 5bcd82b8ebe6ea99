"""The offline defaults: what runs when no model is named."""

from __future__ import annotations

from pathlib import Path

from oracle.errors import OracleInputError

REPO_ROOT = Path(__file__).resolve().parent.parent
TOY_WORLD = REPO_ROOT / "data" / "toy_world"


def default_oracle() -> Path:
    """The toy world's oracle directory (shipped under data/toy_world/oracle)."""
    path = TOY_WORLD / "oracle"
    if not (path / "oracle_config.json").is_file():
        raise OracleInputError(
            "no model given and the toy world's oracle is not present at "
            f"{path}; pass --target (and --oracle)"
        )
    return path


def default_target() -> str:
    """The toy world's target model directory."""
    path = TOY_WORLD / "target"
    if not (path / "config.json").is_file():
        raise OracleInputError(
            f"no model given and the toy world's target is not at {path}; pass --model"
        )
    return str(path)
