"""The ``oracle`` command line. Each subcommand lives in its own module and imports heavy
libraries inside its function, so that ``oracle --help`` answers at once."""

from __future__ import annotations

import logging
import sys

import typer

from oracle.errors import OracleError

app = typer.Typer(
    name="oracle",
    help="Activation oracles: ask a language model's activations questions in plain language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from oracle.cli import ask, capture  # noqa: F401  (modules register their commands)

    for extra in (
        "training.cli",
        "training.toy_world.cli",
        "serving.cli",
        "audit.cli",
        "oracle.cli.steer",
        "evals.cli",
    ):
        try:
            __import__(extra)
        except ModuleNotFoundError as exc:
            # a use not installed (its package absent) is skipped; a broken import is not.
            if exc.name is None or not extra.startswith(exc.name):
                raise


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _register()
    try:
        app()
    except OracleError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
