"""Command-line options generated from a config dataclass (:mod:`oracle.fields`): one option
per field, with the field's help, default, choices and type, so that a command and its config
cannot drift apart. Options of list and mapping fields take YAML (``--read-layers "[4, 8]"``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, Optional

import typer

from oracle.fields import FieldInfo, describe

SIMPLE = (str, int, float, bool)


def option_type(info: FieldInfo) -> type:
    """The option's Python type: the field's simple type, or str (parsed as YAML) otherwise."""
    kind = info.base_type
    return kind if kind in SIMPLE else str


def takes_yaml(info: FieldInfo) -> bool:
    return info.base_type not in SIMPLE and not info.repeat


def parse_yaml(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"not valid YAML: {value!r} ({exc})") from None


def field_options(
    cls: type, *, skip: Sequence[str] = (), overrides_only: bool = False
) -> list[inspect.Parameter]:
    """One keyword-only parameter per field of ``cls`` (but ``skip``), for a typer command.

    ``overrides_only``: every option defaults to None (unset), for commands whose config also
    comes from a file that the options override; else an option's default is the field's.
    """
    params = []
    for info in describe(cls):
        if info.name in skip:
            continue
        kind: Any = option_type(info)
        text = info.help + (" (YAML)" if takes_yaml(info) else "")
        if info.choices is not None:
            kind = Literal[info.choices]  # typer offers and checks the choices
        if info.repeat:  # --name a --name b
            kind = list[str]
        if overrides_only:
            default = typer.Option(None, help=text, show_default=False)
            annotation: Any = Optional[kind]  # noqa: UP045 - typer reads it at runtime
        elif info.required:
            default = typer.Option(..., help=text)
            annotation = kind
        elif info.envvar is not None:  # a secret: read from the environment, never shown
            default = typer.Option(
                info.default, help=f"{text} (or set {info.envvar})", envvar=info.envvar,
                show_default=False, show_envvar=False,
            )  # fmt: skip
            annotation = Optional[kind] if info.optional else kind  # noqa: UP045
        else:
            default = typer.Option(info.default, help=text)
            annotation = Optional[kind] if info.optional else kind  # noqa: UP045
        params.append(
            inspect.Parameter(
                info.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params


def config_kwargs(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` among ``values`` (options of a generated command), YAML parsed."""
    out = {}
    for info in describe(cls):
        if info.name in values:
            value = values[info.name]
            if takes_yaml(info) and isinstance(value, str):
                value = parse_yaml(value)
            out[info.name] = value
    return out


def build_command(
    fn: Callable[..., None], params: Sequence[inspect.Parameter], doc: str
) -> Callable[..., None]:
    """``fn(**options)`` as a typer command whose options are ``params``."""

    def command(**kwargs: Any) -> None:
        fn(**kwargs)

    command.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = fn.__name__
    return command


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword-only parameter written by hand (``default`` a ``typer.Option``)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def option_defaults(command: Callable[..., None]) -> dict[str, Any]:
    """``{parameter name: default}`` of a typer command, as the command line sees it."""
    group = typer.Typer(add_completion=False)
    group.command("x")(command)
    click_command = typer.main.get_command(group)
    return {p.name: p.default for p in click_command.params}
