"""``python -m training.toy_world build|eval ...``: the same as ``oracle toy-world ...``."""

from __future__ import annotations

import sys

from oracle.cli import main

if __name__ == "__main__":
    sys.argv = ["oracle", "toy-world", *sys.argv[1:]]
    main()
