"""Options and helpers shared by CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleInputError
from oracle.inputs import TargetInput
from oracle.jsonio import read_json
from oracle.worlds import WORLD_HELP
from oracle_cli.options import option


def parse_layers(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OracleInputError(f"--layers takes comma-separated integers, got {text!r}") from None


def read_target_input(
    prompt: str | None, messages_file: Path | None, add_generation_prompt: bool = False
) -> TargetInput:
    if (prompt is None) == (messages_file is None):
        raise OracleInputError("give exactly one of --prompt or --messages-file")
    if prompt is not None:
        return TargetInput(prompt=prompt)
    messages = read_json(messages_file, "messages file")
    if isinstance(messages, dict) and "messages" in messages:
        messages = messages["messages"]
    return TargetInput(messages=messages, add_generation_prompt=add_generation_prompt)


# The model options most commands share.
TargetOpt = Annotated[
    str | None,
    typer.Option(help="Target model: hub id or local directory (default: the oracle's base)."),
]
OracleOpt = Annotated[
    Path | None,
    typer.Option(help="Oracle directory (default, with no --target: the toy world's oracle)."),
]
DtypeOpt = Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
ForceOpt = Annotated[
    bool, typer.Option(help="Use the oracle even if its base-model fingerprint differs.")
]
WorldOpt = Annotated[str | None, typer.Option(help=WORLD_HELP)]


def resolve_models(
    world: str | None, target: str | None, oracle: Path | str | None
) -> tuple[str | None, str | None]:
    """(target, oracle directory) for ``--world``/``--target``/``--oracle``: an explicit model
    wins, the world fills in the oracle, and nothing given is the toy world
    (:func:`oracle.worlds.resolve`)."""
    from oracle.worlds import resolve

    return resolve(world, target, oracle)


# The same, as parameters of a generated command (oracle_cli.options.build_command).
MODEL_OPTIONS = [
    option("world", WorldOpt, None),
    option("target", TargetOpt, None),
    option("oracle", OracleOpt, None),
    option("dtype", DtypeOpt, "auto"),
    option("device", DeviceOpt, "auto"),
    option("force", ForceOpt, False),
]
