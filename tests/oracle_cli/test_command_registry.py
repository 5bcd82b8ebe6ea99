"""The command line is a registry: every command joins through the ``oracle.commands``
entry-point group of pyproject.toml, and the registry knows none by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oracle_cli import GROUP, command_entry_points, load_commands, register

REPO = Path(__file__).resolve().parents[2]


def declared_commands() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["entry-points"][GROUP]


def test_every_declared_command_is_installed_and_registered():
    declared = declared_commands()
    installed = {ep.name: ep.value for ep in command_entry_points()}
    assert installed == declared  # a stale install would show here: pip install -e .
    assert set(load_commands()) == set(declared)
    from oracle_cli import app

    out = CliRunner().invoke(app, ["--help"]).output
    for name in declared:
        assert name in out


def test_the_registry_module_names_no_command():
    source = (REPO / "oracle_cli" / "__init__.py").read_text()
    code = source.split('"""', 2)[2]  # past the docstring, which shows an example
    for name, value in declared_commands().items():
        assert value.split(":")[0] not in code, name


def test_register_takes_a_group_or_a_function():
    app = typer.Typer()
    group = typer.Typer()

    @group.command("hello")
    def hello() -> None:
        typer.echo("hello from the group")

    def single(name: str = "x") -> None:
        typer.echo(f"single {name}")

    register("grp", group, app)
    register("one", single, app)
    runner = CliRunner()
    assert runner.invoke(app, ["grp", "hello"]).output.strip() == "hello from the group"
    assert runner.invoke(app, ["one", "--name", "y"]).output.strip() == "single y"
    with pytest.raises(TypeError, match="typer.Typer or a function"):
        register("bad", 42, app)
