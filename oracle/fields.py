"""Settings defined once: a config dataclass whose fields carry their help, choices and bounds.

The command line (``oracle_cli.options``) and the HTTP request models
(``serving.config_models``) are generated from such a dataclass, and its ``__post_init__``
checks the same bounds (:func:`check_fields`), so that the library, the CLI and the HTTP API
cannot drift apart in defaults, help or limits::

    @dataclass
    class Example:
        steps: int = setting(60, "optimisation steps", ge=1)
        read: str = setting("reply", "what the oracle reads", choices=("prompt", "reply"))

        def __post_init__(self) -> None:
            check_fields(self)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

from oracle.errors import OracleInputError

BOUNDS = ("ge", "gt", "le", "lt")


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    choices: tuple[str, ...] | None = None,
    envvar: str | None = None,
    repeat: bool = False,
    **bounds: float,
) -> Any:
    """A dataclass field with its help string, its choices (for strings), numeric bounds
    (``ge``, ``gt``, ``le``, ``lt``) and, for the command line, an environment variable that
    may give it (its value then never shown) or, for a list of strings, ``repeat``: an option
    given once per item (``--suite a.jsonl --suite b.jsonl``) rather than as YAML; without
    ``default`` the field is required."""
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}; use {BOUNDS}")
    metadata = {
        "help": help, "choices": choices, "bounds": bounds, "envvar": envvar, "repeat": repeat
    }  # fmt: skip
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldInfo:
    """One field of a config dataclass, as the generators read it."""

    name: str
    type: Any  # the resolved annotation, e.g. int, str | None
    default: Any  # dataclasses.MISSING when the field is required
    help: str
    choices: tuple[str, ...] | None
    bounds: dict[str, float]
    envvar: str | None = None
    repeat: bool = False  # a list option given once per item

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def base_type(self) -> Any:
        """The annotation without ``None`` (``int | None`` -> ``int``)."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if isinstance(self.type, types.UnionType | typing._UnionGenericAlias) and len(args) == 1:  # type: ignore[attr-defined]
            return args[0]
        return self.type

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)


def describe(cls: type) -> list[FieldInfo]:
    """The fields of the dataclass ``cls``, in order, with their help, choices and bounds."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        if f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        meta = f.metadata
        out.append(
            FieldInfo(
                f.name,
                hints[f.name],
                default,
                meta.get("help", ""),
                meta.get("choices"),
                dict(meta.get("bounds", {})),
                meta.get("envvar"),
                meta.get("repeat", False),
            )
        )
    return out


def defaults(cls: type) -> dict[str, Any]:
    """``{name: default}`` of the fields that have one."""
    return {f.name: f.default for f in describe(cls) if not f.required}


def _fails(value: float, bounds: dict[str, float]) -> str | None:
    checks = {
        "ge": (lambda b: value >= b, ">="),
        "gt": (lambda b: value > b, ">"),
        "le": (lambda b: value <= b, "<="),
        "lt": (lambda b: value < b, "<"),
    }
    for key, bound in bounds.items():
        ok, sign = checks[key]
        if not ok(bound):
            return f"{sign} {bound:g}"
    return None


def check_fields(obj: Any) -> None:
    """Raise :class:`OracleInputError` for a field of ``obj`` outside its type, choices or
    bounds (``None`` passes where the annotation allows it)."""
    for info in describe(type(obj)):
        value = getattr(obj, info.name)
        if value is None and info.optional:
            continue
        kind = info.base_type
        if kind is bool:
            if not isinstance(value, bool):
                raise OracleInputError(f"{info.name} must be true or false, got {value!r}")
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise OracleInputError(f"{info.name} must be an integer, got {value!r}")
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OracleInputError(f"{info.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise OracleInputError(f"{info.name} must be a finite number, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise OracleInputError(f"{info.name} must be a string, got {value!r}")
        if info.choices is not None and value not in info.choices:
            raise OracleInputError(f"{info.name} must be one of {info.choices}, got {value!r}")
        if info.bounds and kind in (int, float):
            failed = _fails(value, info.bounds)
            if failed:
                raise OracleInputError(f"{info.name} must be {failed}, got {value!r}")
