"""``oracle train``: train an oracle from a YAML/JSON config; every config field is also a flag.

The flags are generated from :class:`training.config.TrainConfig`, one per field, with the
field's help string, so the CLI and the config file cannot drift apart. A flag given on the
command line overrides the file. List and mapping fields take YAML (``--read-layers "[4, 8]"``).

``python -m oracle_cli.train ARGS`` = ``oracle train ARGS``, for launchers that start a module
(``torchrun --nproc_per_node 2 -m oracle_cli.train --config FILE``).
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer

log = logging.getLogger(__name__)
_SIMPLE = (str, int, float, bool)


def _flag_type(annotation: Any) -> type:
    """The flag's Python type: a simple type, or str (parsed as YAML) for lists/maps/unions."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation in _SIMPLE:
        return annotation
    if isinstance(annotation, types.UnionType | typing._UnionGenericAlias) and len(args) == 1:  # type: ignore[attr-defined]
        if args[0] in _SIMPLE:
            return args[0]
    return str


def _parse_yaml(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"not valid YAML: {value!r} ({exc})") from None


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


def _build_command():
    from training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    yaml_fields: set[str] = set()
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--config",
                "-c",
                help="YAML or JSON file of TrainConfig fields (flags override it)",
                exists=True,
                dir_okay=False,
            ),
            annotation=Optional[Path],  # noqa: UP045  (typer reads the annotation at runtime)
        )
    ]
    for f in fields(TrainConfig):
        kind = _flag_type(hints[f.name])
        if kind is str and hints[f.name] is not str:
            yaml_fields.add(f.name)
        suffix = " (YAML)" if f.name in yaml_fields else ""
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, help=f.metadata["help"] + suffix, show_default=False),
                annotation=Optional[kind],  # noqa: UP045
            )
        )

    def train(**kwargs: Any) -> None:
        config_file = kwargs.pop("config")
        overrides = {
            k: _parse_yaml(v) if k in yaml_fields else v for k, v in kwargs.items() if v is not None
        }
        _train(config_file, overrides)

    train.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train.__doc__ = (
        "Train an oracle (LoRA on the target's own weights) and save the oracle directory. "
        "Multi-process: torchrun --nproc_per_node N -m oracle_cli.train --config FILE."
    )
    return train


train_cmd = _build_command()


if __name__ == "__main__":
    import sys

    from oracle_cli import main

    main(["train", *sys.argv[1:]])
