"""HTTP request models generated from a config dataclass (:mod:`oracle.fields`): one field per
config field, with its default, help (the schema's description), choices and bounds, so that
the HTTP API and the library (and the CLI, generated the same way) agree by construction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from oracle.fields import describe


def request_model(
    cls: type,
    name: str,
    *,
    exclude: Sequence[str] = (),
    caps: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, tuple[Any, Any]] | None = None,
    doc: str | None = None,
    base: type[BaseModel] | None = None,
) -> type[BaseModel]:
    """A pydantic model of the fields of ``cls`` but ``exclude``, plus ``extra`` fields.

    ``caps``: the server's own limits per field, added to the field's bounds (for example
    ``{"steps": {"le": 500}}``). Unknown keys in a request are refused (422).
    """
    caps = caps or {}
    fields: dict[str, Any] = {}
    for info in describe(cls):
        if info.name in exclude:
            continue
        kind: Any = info.type
        if info.choices is not None:
            kind = Literal[info.choices]  # type: ignore[valid-type]
            if info.optional:
                kind = kind | None
        constraints = {**info.bounds, **caps.get(info.name, {})}
        default = ... if info.required else info.default
        fields[info.name] = (kind, Field(default, description=info.help, **constraints))
    fields.update(extra or {})
    model = create_model(  # type: ignore[call-overload]
        name,
        __base__=base,
        __config__=None if base is not None else ConfigDict(extra="forbid"),
        __doc__=doc or cls.__doc__,
        **fields,
    )
    return model
