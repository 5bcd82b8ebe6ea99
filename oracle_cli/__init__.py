"""The ``oracle`` command line: a registry that knows no command by name.

Every command joins through the entry-point group ``oracle.commands`` in a package's
``pyproject.toml`` (the way pytest and flake8 find their plugins)::

    [project.entry-points."oracle.commands"]
    ask = "oracle_cli.ask:ask_cmd"                  # a function: one command
    toy-world = "worlds.toy.cli:toy_app"    # a typer.Typer: a group of commands

This package is the top import layer: it may import every package, and none imports it.
Command modules import heavy libraries inside their functions, so that ``oracle --help``
answers at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, distributions

import typer

from oracle.errors import OracleError

GROUP = "oracle.commands"

app = typer.Typer(
    name="oracle",
    help="Activation oracles: ask a language model's activations questions in plain language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_registered: set[str] = set()


def command_entry_points() -> list[EntryPoint]:
    """The installed ``oracle.commands`` entry points, one per name (the first found wins).

    Read from every distribution on the path, not one per project name: in a checkout, an
    in-tree ``*.egg-info`` left by an older build can stand before the installed metadata and
    would hide its commands.
    """
    seen: dict[str, EntryPoint] = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == GROUP:
                seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda ep: ep.name)


def register(name: str, obj: object, target: typer.Typer = app) -> None:
    """Add ``obj`` to ``target`` as command ``name``: a Typer as a group, a function as one."""
    if isinstance(obj, typer.Typer):
        target.add_typer(obj, name=name)
    elif callable(obj):
        target.command(name)(obj)
    else:
        raise TypeError(f"command {name!r}: a typer.Typer or a function, not {type(obj).__name__}")


def load_commands() -> list[str]:
    """Register every installed command on :data:`app` once; returns the names registered."""
    eps = command_entry_points()
    if not eps:
        raise OracleError(
            f"no commands are registered in the entry-point group {GROUP!r}: install the "
            "package (pip install -e . in a checkout) so that its metadata is found"
        )
    for ep in eps:
        if ep.name in _registered:
            continue
        try:
            obj = ep.load()
        except ImportError as exc:
            raise OracleError(f"command {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        register(ep.name, obj)
        _registered.add(ep.name)
    return sorted(_registered)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``oracle`` console script; ``argv`` (without the program name) for tests."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        load_commands()
        app(args=list(argv) if argv is not None else None, prog_name="oracle")
    except OracleError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
