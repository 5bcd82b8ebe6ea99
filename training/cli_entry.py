"""``python -m training.cli_entry ARGS`` = ``oracle train ARGS``, for launchers that start a
module (``torchrun --nproc_per_node 2 -m training.cli_entry --config FILE``)."""

from __future__ import annotations

import sys


def main() -> None:
    from oracle.cli import main as oracle_main

    sys.argv = [sys.argv[0], "train", *sys.argv[1:]]
    oracle_main()


if __name__ == "__main__":
    main()
