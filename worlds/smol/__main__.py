"""``python -m worlds.smol build ...`` = ``oracle smol-world build ...``."""

from __future__ import annotations

from worlds.smol.cli import smol_app

if __name__ == "__main__":
    smol_app()
