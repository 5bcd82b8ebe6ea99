"""``oracle train``: train an oracle from a YAML/JSON config; every config field is also a flag.

The flags are generated from :class:`training.config.TrainConfig`, one per field, with the
field's help string, so the CLI and the config file cannot drift apart. A flag given on the
command line overrides the file. List and mapping fields take YAML (``--read-layers "[4, 8]"``).

``python -m oracle_cli.train ARGS`` = ``oracle train ARGS``, for launchers that start a module
(``torchrun --nproc_per_node 2 -m oracle_cli.train --config FILE``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import typer

from oracle_cli.options import build_command, config_kwargs, field_options, option

log = logging.getLogger(__name__)


def _train(config_file: Path | None, overrides: dict[str, Any]) -> None:
    from training.config import TrainConfig
    from training.sources import load_data
    from training.train import train_oracle

    if config_file is not None:
        config = TrainConfig.load(config_file, **overrides)
    else:
        config = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if config.train_data is None:
        raise typer.BadParameter("give train_data in the config file or --train-data")
    train = load_data(config.train_data, config.seed, config.mix_size, config.model)
    evaluation = None
    if config.eval_data is not None:
        evaluation = load_data(config.eval_data, config.seed + 1, None, config.model)
    path = train_oracle(config, train, evaluation, progress=True)
    typer.echo(f"oracle saved to {path}")


def _run(config: Path | None, **flags: Any) -> None:
    """Train an oracle (LoRA on the target's own weights) and save the oracle directory.
    Multi-process: torchrun --nproc_per_node N -m oracle_cli.train --config FILE."""
    from training.config import TrainConfig

    given = {k: v for k, v in flags.items() if v is not None}
    _train(config, config_kwargs(TrainConfig, given))


def _build_command():
    from training.config import TrainConfig

    params = [
        option(
            "config",
            Optional[Path],  # noqa: UP045 - typer reads it at runtime
            typer.Option(
                None,
                "--config",
                "-c",
                help="YAML or JSON file of TrainConfig fields (flags override it)",
                exists=True,
                dir_okay=False,
            ),
        ),
        # every field, unset by default, so that a flag given overrides the file
        *field_options(TrainConfig, overrides_only=True),
    ]
    return build_command(_run, params, _run.__doc__ or "")


train_cmd = _build_command()


if __name__ == "__main__":
    import sys

    from oracle_cli import main

    main(["train", *sys.argv[1:]])
