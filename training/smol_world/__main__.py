"""``python -m training.smol_world build [--stage S1,S2] [--work DIR] [--force]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch


def main() -> None:
    from training.smol_world.build import DEFAULT_WORK, STAGES, SmolBuild, SmolBuildConfig

    parser = argparse.ArgumentParser(description="Build the SmolLM2 world (resumable stages).")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--stage", default="all", help=f"all or some of {','.join(STAGES)}")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    stages = list(STAGES) if args.stage == "all" else args.stage.split(",")
    SmolBuild(args.work, SmolBuildConfig()).run(stages, args.force)


if __name__ == "__main__":
    main()
