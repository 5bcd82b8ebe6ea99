"""``python -m training.smol_world build ...`` = ``oracle smol-world build ...``."""

from __future__ import annotations

from training.smol_world.cli import smol_app

if __name__ == "__main__":
    smol_app()
