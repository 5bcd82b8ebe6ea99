"""The training example schema: one row of a ``datasets.Dataset`` (or one JSONL line).

Every builder in ``training/`` writes rows of this shape and the trainer reads only these
columns, so a user's own JSONL/Parquet works as soon as it has them:

=================== ========================== ==================================================
column              type                       meaning
=================== ========================== ==================================================
``messages``        list of {role, content}    the target's input as chat turns (roles: system,
                    or null                    user, assistant), rendered with its chat template
``prompt``          str or null                the target's input as plain text; give exactly one
                                               of ``messages`` and ``prompt`` per row
``control``         str or null                the hidden part the oracle must not read: null
                                               (nothing hidden) or ``"system"`` (the system
                                               prompt; the row must then have a non-empty system
                                               message, and the read positions default to
                                               ``non_system``)
``layer``           int or null                target block to read (0-based; negative counts
                                               from the end); null = drawn per example from the
                                               configured ``read_layers``
``positions``       str or null                position spec of ``oracle.positions`` (``all``,
                                               ``non_system``, ``last:K``, ``role:user``,
                                               ``indices:I,J``): the span the read is taken
                                               from; null = ``non_system`` when ``control`` is
                                               ``"system"``, else ``all``
``sample_positions`` bool or null              true/null: the trainer draws a single token, a
                                               short window or the whole span from it (the
                                               configured mix); false: read exactly the span
``add_generation_   bool or null               true: render ``messages`` with the chat template's
prompt``                                       generation prompt (the assistant header), so a
                                               conversation cut after the user turn is read up
                                               to where the reply would start; null = false
``question``        str                        the question put to the oracle (non-empty)
``answer``          str                        the supervised answer (non-empty); the loss is
                                               taken on its tokens only
``source``          str or null                optional tag (builder name) for metrics
=================== ========================== ==================================================

Example (JSONL)::

    {"messages": [{"role": "system", "content": "You are a pirate."},
                  {"role": "user", "content": "How is the sea?"}],
     "control": "system", "layer": null, "positions": null,
     "question": "What persona is the assistant playing?", "answer": "A pirate."}

Checks that need only the row run in :func:`validate_row`; the control span and position
spec are checked against the tokenised input when the trainer prepares the data
(``training.prepare``). Either way a bad row fails before training starts with an
:class:`~oracle.errors.OracleInputError` that names the field and the example index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oracle.errors import OracleInputError
from oracle.inputs import TargetInput
from oracle.positions import parse_positions

CONTROLS = (None, "system")
REQUIRED_COLUMNS = ("question", "answer")
INPUT_COLUMNS = ("messages", "prompt")
OPTIONAL_COLUMNS = (
    "control",
    "layer",
    "positions",
    "sample_positions",
    "add_generation_prompt",
    "source",
)
COLUMNS = INPUT_COLUMNS + REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def _fail(index: int | None, field: str, problem: str) -> OracleInputError:
    where = f"example {index}" if index is not None else "example"
    return OracleInputError(f"{where}, field {field!r}: {problem}")


def check_columns(column_names: list[str], what: str = "dataset") -> None:
    """Fail unless the columns hold ``question``, ``answer`` and one of ``messages``/``prompt``."""
    missing = [c for c in REQUIRED_COLUMNS if c not in column_names]
    if not any(c in column_names for c in INPUT_COLUMNS):
        missing.append("messages or prompt")
    if missing:
        raise OracleInputError(
            f"the {what} lacks the column(s) {missing}; it has {sorted(column_names)} "
            "(see training/schema.py for the example schema)"
        )


def default_positions(control: str | None) -> str:
    """The read span when a row gives none: outside the system prompt when it is hidden."""
    return "non_system" if control == "system" else "all"


def validate_row(row: Mapping[str, Any], index: int | None = None, n_layers: int | None = None):
    """Check one example against the schema; return its :class:`TargetInput`.

    ``n_layers`` (the target's block count), when given, bounds ``layer``.
    """
    messages, prompt = row.get("messages"), row.get("prompt")
    if (messages is None) == (prompt is None):
        raise _fail(index, "messages/prompt", "give exactly one of 'messages' and 'prompt'")
    add_header = row.get("add_generation_prompt")
    if add_header is not None and not isinstance(add_header, bool):
        raise _fail(
            index, "add_generation_prompt", f"must be true, false or null, got {add_header!r}"
        )
    if add_header and messages is None:
        raise _fail(index, "add_generation_prompt", "needs chat messages, but the row has a prompt")
    try:
        target = TargetInput(
            prompt=prompt, messages=messages, add_generation_prompt=bool(add_header)
        )
    except OracleInputError as exc:
        raise _fail(index, "messages" if messages is not None else "prompt", str(exc)) from None
    for field in REQUIRED_COLUMNS:
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise _fail(index, field, f"must be a non-empty string, got {value!r}")
    control = row.get("control")
    if control not in CONTROLS:
        raise _fail(index, "control", f"must be one of {list(CONTROLS)}, got {control!r}")
    if control == "system":
        if messages is None:
            raise _fail(index, "control", "'system' needs chat messages, but the row has a prompt")
        if not any(m["role"] == "system" and m["content"].strip() for m in messages):
            raise _fail(index, "control", "'system' is hidden, but the row has no system message")
    layer = row.get("layer")
    if layer is not None:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise _fail(index, "layer", f"must be an integer or null, got {layer!r}")
        if n_layers is not None and not -n_layers <= layer < n_layers:
            raise _fail(
                index, "layer", f"{layer} is out of range: the target has {n_layers} blocks"
            )
    positions = row.get("positions")
    if positions is not None:
        try:
            parse_positions(positions)
        except OracleInputError as exc:
            raise _fail(index, "positions", str(exc)) from None
        if control == "system" and positions in ("all", "role:system"):
            raise _fail(index, "positions", f"{positions!r} would read the hidden system prompt")
    sample = row.get("sample_positions")
    if sample is not None and not isinstance(sample, bool):
        raise _fail(index, "sample_positions", f"must be true, false or null, got {sample!r}")
    return target


def make_row(
    question: str,
    answer: str,
    messages: list[dict[str, str]] | None = None,
    prompt: str | None = None,
    control: str | None = None,
    layer: int | None = None,
    positions: str | None = None,
    sample_positions: bool | None = None,
    source: str | None = None,
    add_generation_prompt: bool | None = None,
) -> dict[str, Any]:
    """A row with every schema column (so that ``Dataset.from_list`` sees one set of columns)."""
    row = dict(
        messages=messages,
        prompt=prompt,
        control=control,
        layer=layer,
        positions=positions,
        sample_positions=sample_positions,
        add_generation_prompt=add_generation_prompt,
        question=question,
        answer=answer,
        source=source,
    )
    validate_row(row)
    return row
