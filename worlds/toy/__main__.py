"""``python -m worlds.toy build|eval ...``: the same as ``oracle toy-world ...``."""

from __future__ import annotations

from worlds.toy.cli import toy_app

if __name__ == "__main__":
    toy_app(prog_name="python -m worlds.toy")
