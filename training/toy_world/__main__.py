"""``python -m training.toy_world build|eval ...``: the same as ``oracle toy-world ...``."""

from __future__ import annotations

from training.toy_world.cli import toy_app

if __name__ == "__main__":
    toy_app(prog_name="python -m training.toy_world")
